//! Module parameters for the loads coldplug makes: what `modprobe` would
//! pass from `/etc/modprobe.d` and from the kernel command line.
//!
//! The kernel hands `MODULE.PARAM=VALUE` from its command line only to
//! built-in code; for a loadable module it is modprobe that reads
//! /proc/cmdline and appends them to the load. We load with
//! `finit_module` ourselves, so we do the same here: an administrator can
//! write `hpsa.hpsa_allow_any=1` or `mpt3sas.max_queue_depth=64` on the live
//! image's command line exactly as on an installed system.

use std::collections::BTreeMap;

use crate::bootparams::{Param, module_name};

use super::alias;

/// Options given to every load of a module, in addition to the command
/// line's: the few that old hardware needs and no stock config sets.
const DEFAULTS: &[(&str, &str, &str)] = &[
    // The Smart Array boards of the cciss era (P400, P800, 6i, E200...):
    // hpsa leaves them to the old cciss driver, which Linux removed in 4.14,
    // unless told to take any Smart Array it finds. Newer boards ignore it.
    ("hpsa", "hpsa_allow_any", "1"),
];

/// Parameters per module (normalised name), each `PARAM=VALUE` or a bare
/// `PARAM`, in the order given; later ones override earlier ones in the
/// kernel, so the command line comes after the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleOptions {
    by_module: BTreeMap<String, Vec<String>>,
}

impl ModuleOptions {
    /// The built-in defaults, then every `MODULE.PARAM[=VALUE]` of `params`
    /// (the kernel command line, split as the kernel splits it).
    pub fn from_cmdline(params: &[Param<'_>]) -> Self {
        let mut o = ModuleOptions::default();
        for (module, param, value) in DEFAULTS {
            o.push(module, param, Some(value));
        }
        for p in params {
            let Some((module, param)) = p.key.split_once('.') else {
                continue;
            };
            // p2xen.* are ours; a dotted key with anything but a module
            // name before the dot (`a/b.c`) names no module.
            if module == "p2xen" || param.is_empty() || module_name(module).is_err() {
                continue;
            }
            o.push(module, param, p.value);
        }
        o
    }

    fn push(&mut self, module: &str, param: &str, value: Option<&str>) {
        let text = match value {
            // The kernel's parse_args() splits the string at spaces outside
            // double quotes, as it does the command line.
            Some(v) if v.contains(char::is_whitespace) => format!("{param}=\"{v}\""),
            Some(v) => format!("{param}={v}"),
            None => param.to_string(),
        };
        self.by_module
            .entry(alias::normalize(module))
            .or_default()
            .push(text);
    }

    /// The parameter string for loading `module` ("" for none).
    pub fn for_module(&self, module: &str) -> String {
        self.by_module
            .get(&alias::normalize(module))
            .map(|v| v.join(" "))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::split;

    #[test]
    fn cmdline_module_parameters_follow_the_defaults() {
        let o = ModuleOptions::from_cmdline(&split(
            "quiet p2xen.server=10.0.0.1 hpsa.hpsa_simple_mode=1 mpt3sas.max_queue_depth=64 \
             3w-9xxx.use_msi=1 megaraid_sas.msix_disable console=ttyS0 \
             mod.text=\"a b\" ./x.y=1 .z=2 hpsa.=3",
        ));
        assert_eq!(o.for_module("hpsa"), "hpsa_allow_any=1 hpsa_simple_mode=1");
        assert_eq!(o.for_module("mpt3sas"), "max_queue_depth=64");
        // modprobe's spelling rule: '-' and '_' are the same in module names.
        assert_eq!(o.for_module("3w_9xxx"), "use_msi=1");
        assert_eq!(o.for_module("3w-9xxx"), "use_msi=1");
        assert_eq!(o.for_module("megaraid_sas"), "msix_disable");
        assert_eq!(o.for_module("mod"), "text=\"a b\"");
        assert_eq!(o.for_module("p2xen"), "");
        assert_eq!(o.for_module("ahci"), "");
        assert_eq!(o.by_module.len(), 5, "{o:?}");
    }

    #[test]
    fn the_command_line_can_override_a_default() {
        let o = ModuleOptions::from_cmdline(&split("hpsa.hpsa_allow_any=0"));
        // The kernel applies parameters in order: the last one wins.
        assert_eq!(o.for_module("hpsa"), "hpsa_allow_any=1 hpsa_allow_any=0");
    }
}
