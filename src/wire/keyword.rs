//! Enums spelled as fixed keywords on the kernel command line, in
//! machine.json and on the command line of the subcommands: one macro so that
//! the spelling, the parser and the "accepted" text cannot drift apart.

/// Defines `enum $name` with `ALL`, `ACCEPTED` ("a|b|c"), `parse`, `as_str`
/// and `Display`, each variant spelled `$word`. Attributes (derives, serde,
/// docs) are passed through to the enum and its variants.
macro_rules! keyword_enum {
    (@join $first:literal $(, $rest:literal)*) => { concat!($first $(, "|", $rest)*) };
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            pub const ACCEPTED: &'static str = keyword_enum!(@join $($word),+);

            pub fn parse(v: &str) -> Result<Self, String> {
                match v {
                    $($word => Ok(Self::$variant),)+
                    other => Err(format!("{other:?} is not one of them")),
                }
            }

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $word),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use keyword_enum;
