//! The order of the control messages, shared by both ends: `send` and
//! `receive` ask [`Phase::check`] before acting on a message, so a message
//! out of its place is refused by name on either side, the same way.
//!
//! ```text
//! sender                         receiver
//! Hello            ──Hello──▶    Welcome | Refused
//! Start            ──Start──▶    Ready | Refused
//! chunks, Offer, DiskEnd ──Copy─▶ Want (to an Offer) | Refused
//! Finish           ──Finish─▶    Done | Refused
//! ```

use super::message::Message;

/// Where a session stands, named by what the sender sends in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before authentication: the sender's Hello, the receiver's Welcome.
    Hello,
    /// Authenticated: the sender's Start, the receiver's Ready.
    Start,
    /// Chunks with Offers (a cutover) and DiskEnds, closed by Finish; the
    /// receiver answers Offers with Want.
    Copy,
    /// After Finish: the receiver verifies and answers Done.
    Finish,
}

/// Which end sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Sender,
    Receiver,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Sender => "sender",
            Side::Receiver => "receiver",
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Hello => "hello",
            Phase::Start => "start",
            Phase::Copy => "copy",
            Phase::Finish => "finish",
        })
    }
}

/// A message that has no place in the phase it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{from} sent {got} during the {phase} phase: expected {expected}")]
pub struct OutOfOrder {
    pub phase: Phase,
    pub from: Side,
    /// The message's `type` tag.
    pub got: &'static str,
    /// The tags legal there, as "a, b or c".
    pub expected: String,
}

/// The message's `type` tag, as on the wire.
pub fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello",
        Message::Welcome { .. } => "welcome",
        Message::Refused { .. } => "refused",
        Message::Start { .. } => "start",
        Message::Ready { .. } => "ready",
        Message::Offer { .. } => "offer",
        Message::Want { .. } => "want",
        Message::DiskEnd { .. } => "disk_end",
        Message::Finish => "finish",
        Message::Done { .. } => "done",
    }
}

impl Phase {
    /// The tags `from` may send in this phase. Refused ends any phase, from
    /// the receiver; the sender never refuses, it closes.
    pub fn legal(self, from: Side) -> &'static [&'static str] {
        match (self, from) {
            (Phase::Hello, Side::Sender) => &["hello"],
            (Phase::Hello, Side::Receiver) => &["welcome", "refused"],
            (Phase::Start, Side::Sender) => &["start"],
            (Phase::Start, Side::Receiver) => &["ready", "refused"],
            (Phase::Copy, Side::Sender) => &["offer", "disk_end", "finish"],
            (Phase::Copy, Side::Receiver) => &["want", "refused"],
            (Phase::Finish, Side::Sender) => &[],
            (Phase::Finish, Side::Receiver) => &["done", "refused"],
        }
    }

    /// Ok when `m` from `from` belongs in this phase.
    pub fn check(self, from: Side, m: &Message) -> Result<(), OutOfOrder> {
        let got = kind(m);
        let legal = self.legal(from);
        if legal.contains(&got) {
            return Ok(());
        }
        let expected = match legal {
            [] => "nothing".to_string(),
            [only] => (*only).to_string(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        Err(OutOfOrder {
            phase: self,
            from,
            got,
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        let json = [
            r#"{"type":"hello","protocol":1,"software":"t","token":"x"}"#,
            r#"{"type":"welcome","protocol":1,"software":"t"}"#,
            r#"{"type":"refused","reason":"r","fatal":true}"#,
            r#"{"type":"ready","resumed":false,"disks":[]}"#,
            r#"{"type":"offer","disk":0,"chunks":[]}"#,
            r#"{"type":"want","disk":0,"offsets":[]}"#,
            r#"{"type":"disk_end","disk":0,"content_digest":"d"}"#,
            r#"{"type":"finish"}"#,
        ];
        json.iter()
            .map(|j| serde_json::from_str(j).unwrap())
            .collect()
    }

    #[test]
    fn kind_is_the_wire_tag() {
        for m in all() {
            let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
            assert_eq!(v["type"], kind(&m), "{m:?}");
        }
    }

    #[test]
    fn out_of_order_messages_are_refused_by_name() {
        let finish = Message::Finish;
        let e = Phase::Start.check(Side::Sender, &finish).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sender sent finish during the start phase: expected start"
        );
        let hello: Message =
            serde_json::from_str(r#"{"type":"hello","protocol":1,"software":"t","token":"x"}"#)
                .unwrap();
        let e = Phase::Copy.check(Side::Sender, &hello).unwrap_err();
        assert_eq!(e.got, "hello");
        assert_eq!(
            e.to_string(),
            "sender sent hello during the copy phase: expected offer, disk_end or finish"
        );
        let e = Phase::Finish.check(Side::Receiver, &finish).unwrap_err();
        assert_eq!(
            e.to_string(),
            "receiver sent finish during the finish phase: expected done or refused"
        );
        let e = Phase::Finish.check(Side::Sender, &finish).unwrap_err();
        assert_eq!(e.expected, "nothing");
    }

    #[test]
    fn each_message_has_exactly_its_phases() {
        let phases = [Phase::Hello, Phase::Start, Phase::Copy, Phase::Finish];
        let legal_in = |from: Side, m: &Message| -> Vec<Phase> {
            phases
                .iter()
                .copied()
                .filter(|p| p.check(from, m).is_ok())
                .collect()
        };
        for m in all() {
            let (s, r) = (legal_in(Side::Sender, &m), legal_in(Side::Receiver, &m));
            let want: (&[Phase], &[Phase]) = match kind(&m) {
                "hello" => (&[Phase::Hello], &[]),
                "welcome" => (&[], &[Phase::Hello]),
                "refused" => (&[], &phases),
                "ready" => (&[], &[Phase::Start]),
                "offer" | "disk_end" | "finish" => (&[Phase::Copy], &[]),
                "want" => (&[], &[Phase::Copy]),
                other => panic!("{other}"),
            };
            assert_eq!((s.as_slice(), r.as_slice()), want, "{m:?}");
        }
    }
}
