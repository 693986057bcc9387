//! The kernel's `console=` parameter: `console=<device>[,<options>]`, where a
//! serial device's options are `<baud><parity><bits><flow>` (`115200n8`,
//! `9600n8r`). The kernel uses every `console=` given; the last one becomes
//! /dev/console.

/// One `console=` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    /// Device name without `/dev/` (`ttyS0`, `tty0`, `hvc0`).
    pub device: String,
    /// Everything after the first comma, verbatim.
    pub options: Option<String>,
    pub baud: Option<u32>,
    pub parity: Option<Parity>,
    pub data_bits: Option<u8>,
    /// Trailing `r`: RTS/CTS flow control.
    pub flow_control: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Odd,
    Even,
}

impl Console {
    /// Parses one value. Options that are not `<baud>[parity][bits][r]`
    /// (earlycon-style `uart8250,io,0x3f8`) are kept raw and reported.
    pub fn parse(value: &str) -> Result<(Console, Option<String>), String> {
        let (device, options) = match value.split_once(',') {
            Some((d, o)) => (d, Some(o)),
            None => (value, None),
        };
        let device = device.strip_prefix("/dev/").unwrap_or(device);
        if device.is_empty() {
            return Err("no device name".into());
        }
        let mut console = Console {
            device: device.to_string(),
            options: options.map(str::to_string),
            baud: None,
            parity: None,
            data_bits: None,
            flow_control: false,
        };
        let Some(opts) = options else {
            return Ok((console, None));
        };
        let digits = opts.bytes().take_while(u8::is_ascii_digit).count();
        let (baud, rest) = opts.split_at(digits);
        let parsed = baud.parse::<u32>().ok().filter(|b| *b > 0).and_then(|b| {
            let mut chars = rest.chars().peekable();
            let parity = match chars.peek() {
                Some('n') => Some(Parity::None),
                Some('o') => Some(Parity::Odd),
                Some('e') => Some(Parity::Even),
                _ => None,
            };
            if parity.is_some() {
                chars.next();
            }
            let bits = match chars.peek() {
                Some(c @ '5'..='8') => Some(*c as u8 - b'0'),
                _ => None,
            };
            if bits.is_some() {
                chars.next();
            }
            let flow = chars.peek() == Some(&'r');
            if flow {
                chars.next();
            }
            chars.next().is_none().then_some((b, parity, bits, flow))
        });
        match parsed {
            Some((b, parity, bits, flow)) => {
                console.baud = Some(b);
                console.parity = parity;
                console.data_bits = bits;
                console.flow_control = flow;
                Ok((console, None))
            }
            None => {
                let warning = format!(
                    "console={value}: options {opts:?} are not <baud>[n|o|e][5-8][r]; the device is used with its current settings"
                );
                Ok((console, Some(warning)))
            }
        }
    }

    /// The device node, e.g. `/dev/ttyS0`.
    pub fn path(&self) -> String {
        format!("/dev/{}", self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_with_full_options() {
        let (c, w) = Console::parse("ttyS0,115200n8").unwrap();
        assert_eq!(c.device, "ttyS0");
        assert_eq!(c.path(), "/dev/ttyS0");
        assert_eq!(c.baud, Some(115200));
        assert_eq!(c.parity, Some(Parity::None));
        assert_eq!(c.data_bits, Some(8));
        assert!(!c.flow_control);
        assert_eq!(w, None);
    }

    #[test]
    fn baud_only_and_flow_control() {
        let (c, _) = Console::parse("/dev/ttyS1,9600").unwrap();
        assert_eq!(
            (c.device.as_str(), c.baud, c.parity),
            ("ttyS1", Some(9600), None)
        );
        let (c, _) = Console::parse("ttyS1,57600e7r").unwrap();
        assert_eq!(
            (c.parity, c.data_bits, c.flow_control),
            (Some(Parity::Even), Some(7), true)
        );
    }

    #[test]
    fn no_options() {
        let (c, w) = Console::parse("tty0").unwrap();
        assert_eq!(
            (c.device.as_str(), c.options, c.baud, w),
            ("tty0", None, None, None)
        );
    }

    #[test]
    fn odd_options_are_kept_and_reported() {
        let (c, w) = Console::parse("uart8250,io,0x3f8,115200n8").unwrap();
        assert_eq!(c.device, "uart8250");
        assert_eq!(c.options.as_deref(), Some("io,0x3f8,115200n8"));
        assert_eq!(c.baud, None);
        assert!(w.unwrap().contains("not <baud>"));
        assert!(Console::parse("ttyS0,115200x").unwrap().1.is_some());
    }

    #[test]
    fn empty_device_is_an_error() {
        assert!(Console::parse(",115200").is_err());
        assert!(Console::parse("").is_err());
    }
}
