//! Fuzz the receiver's view of the network: frames, chunk headers, chunk
//! decoding and the first (hello) message must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2xen::wire::frame::{Frame, read_frame};
use p2xen::wire::message::parse_hello;

fuzz_target!(|data: &[u8]| {
    let _ = parse_hello(data);
    let mut r = data;
    while let Ok(f) = read_frame(&mut r) {
        match f {
            Frame::Chunk(c) => {
                let _ = c.decode_verified();
            }
            Frame::Control(j) => {
                let _ = parse_hello(&j);
            }
        }
    }
});
