//! Network interfaces as `/sys/class/net` shows them, and whether the speaker may answer on one.
//!
//! Reading is kept apart from parsing: [`list`] reads five small files per interface
//! (`ifindex`, `address`, `flags`, `operstate`, `type`) and hands their text to pure parsers;
//! [`eligible`] and [`default_candidate`] decide from the parsed [`Interface`] alone. No unsafe
//! code and no syscalls beyond reading files.
//!
//! Two facts about sysfs that the parsers rely on:
//! - `flags` is the device's configured flags in hex (`0x1003` = UP|BROADCAST|MULTICAST). It never
//!   contains `IFF_RUNNING`, which the kernel computes on the fly from the operational state; so
//!   "running" is read from `operstate`: `up`, or `unknown` for drivers that do not track
//!   carrier (like `lo`), exactly the states for which the kernel sets `IFF_RUNNING`.
//! - `/sys/class/net` can hold plain files next to the interface directories
//!   (`bonding_masters` when the bonding driver is loaded); those are skipped.

use std::fs;
use std::io;
use std::path::Path;

use regex::Regex;

/// Where the kernel lists the network interfaces of the namespace whose sysfs is mounted.
pub const SYS_CLASS_NET: &str = "/sys/class/net";

/// `IFF_UP`: the interface is administratively up.
const IFF_UP: u32 = 0x1;
/// `IFF_BROADCAST`: the link has a broadcast address (ARP needs it).
const IFF_BROADCAST: u32 = 0x2;
/// `IFF_LOOPBACK`: the loopback interface.
const IFF_LOOPBACK: u32 = 0x8;
/// `IFF_RUNNING`: link up; not in sysfs `flags` in practice, honoured if it ever is.
const IFF_RUNNING: u32 = 0x40;
/// `ARPHRD_ETHER`: the `type` of Ethernet (and Ethernet-like: veth, bridge, bond, VLAN) links.
const ARPHRD_ETHER: u16 = 1;

/// Name prefixes of interfaces that are not node uplinks (container, CNI, tunnel, VM and
/// node-local DNS links) and are skipped unless `--interfaces` says otherwise: MetalLB's default
/// `announcedInterfacesToExclude` (`lxcbr` is covered by `lxc`; loopback is never a candidate).
pub const EXCLUDED_PREFIXES: &[&str] = &[
    "docker",
    "cbr",
    "dummy",
    "veth",
    "cali",
    "flannel",
    "cni",
    "kube-ipvs",
    "lxc",
    "virbr",
    "tunl",
    "nodelocaldns",
];

/// One network interface of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Interface index, as raw sockets bind to it.
    pub index: u32,
    /// Hardware address; all zeros when the link's address is not 6 bytes long (non-Ethernet).
    pub mac: [u8; 6],
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operationally up: `operstate` is `up` or `unknown` (what the kernel reports as
    /// `IFF_RUNNING`).
    pub running: bool,
    /// Has a broadcast address (`IFF_BROADCAST`).
    pub broadcast: bool,
    /// The loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// Ethernet link type (`type` is `ARPHRD_ETHER`).
    pub ether: bool,
}

/// Lists the interfaces of the node from [`SYS_CLASS_NET`], sorted by index.
///
/// # Errors
///
/// See [`list_in`].
pub fn list() -> io::Result<Vec<Interface>> {
    list_in(Path::new(SYS_CLASS_NET))
}

/// Lists the interfaces described under `dir`, laid out like `/sys/class/net`, sorted by index.
///
/// Entries that are not directories are skipped, and so are interfaces that disappear while they
/// are read (a file of theirs is not found).
///
/// # Errors
///
/// The error of reading `dir`; the error of reading an interface's files other than "not found";
/// [`io::ErrorKind::InvalidData`] if `ifindex`, `flags` or `type` does not parse, naming the
/// interface and the file.
pub fn list_in(dir: &Path) -> io::Result<Vec<Interface>> {
    let mut interfaces = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // Follows the symlink to the device directory.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match read_interface(&path, name) {
            Ok(interface) => interfaces.push(interface),
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        }
    }
    interfaces.sort_by_key(|interface| interface.index);
    Ok(interfaces)
}

/// Reads the files of the interface directory `dir` and parses them.
fn read_interface(dir: &Path, name: String) -> io::Result<Interface> {
    let read = |file: &str| fs::read_to_string(dir.join(file));
    let files = SysfsFiles {
        ifindex: &read("ifindex")?,
        address: &read("address")?,
        flags: &read("flags")?,
        operstate: &read("operstate")?,
        link_type: &read("type")?,
    };
    parse_interface(name, &files).map_err(|file| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: cannot parse {file}", dir.display()),
        )
    })
}

/// The text of an interface's sysfs files, as read.
#[derive(Debug)]
struct SysfsFiles<'a> {
    ifindex: &'a str,
    address: &'a str,
    flags: &'a str,
    operstate: &'a str,
    link_type: &'a str,
}

/// Builds an [`Interface`] from its files' text; on failure names the file that did not parse.
fn parse_interface(name: String, files: &SysfsFiles<'_>) -> Result<Interface, &'static str> {
    let index = parse_ifindex(files.ifindex).ok_or("ifindex")?;
    let flags = parse_flags(files.flags).ok_or("flags")?;
    let link_type = parse_link_type(files.link_type).ok_or("type")?;
    Ok(Interface {
        name,
        index,
        mac: parse_mac(files.address).unwrap_or([0; 6]),
        up: flags & IFF_UP != 0,
        running: flags & IFF_RUNNING != 0 || operstate_running(files.operstate),
        broadcast: flags & IFF_BROADCAST != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        ether: link_type == ARPHRD_ETHER,
    })
}

/// Parses `ifindex`: a decimal number, e.g. `"4\n"`. Index 0 does not exist.
fn parse_ifindex(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|&index| index != 0)
}

/// Parses `flags`: a hexadecimal number with `0x`, e.g. `"0x1003\n"`.
fn parse_flags(text: &str) -> Option<u32> {
    let digits = text.trim().strip_prefix("0x")?;
    u32::from_str_radix(digits, 16).ok()
}

/// Parses `type`: a decimal `ARPHRD_*` number, e.g. `"1\n"`.
fn parse_link_type(text: &str) -> Option<u16> {
    text.trim().parse().ok()
}

/// Parses `address` when it is a 6-byte MAC address, e.g. `"02:fc:00:00:00:01\n"`; `None` for
/// other lengths (tunnels have 4 bytes, InfiniBand 20) or malformed text.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Whether `operstate` (RFC 2863 state, e.g. `"up\n"`) means the link can carry frames: `up`,
/// or `unknown` for drivers that do not track it, as the kernel decides `IFF_RUNNING`.
fn operstate_running(text: &str) -> bool {
    matches!(text.trim(), "up" | "unknown")
}

/// Whether an interface called `name` is a candidate by default, i.e. its name starts with none
/// of [`EXCLUDED_PREFIXES`] (container, CNI, tunnel and VM links).
pub fn default_candidate(name: &str) -> bool {
    !EXCLUDED_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Whether the speaker may answer ARP and NDP on `iface`; if not, why (the reason goes to logs).
///
/// An interface must be up, running, not loopback, able to broadcast and Ethernet. Then its name
/// decides: with `interfaces` (the `--interfaces REGEX` flag) it must match the regex, which
/// replaces the default name exclusion; without it, [`default_candidate`] must hold. This function
/// uses [`Regex::is_match`] as given; the controller anchors `--interfaces` (`^(?:REGEX)$`) so the
/// flag matches whole names.
///
/// # Errors
///
/// The reason `iface` is not eligible, one of: `"loopback interface"`, `"interface is down"`,
/// `"interface is not running (no carrier)"`, `"interface cannot broadcast"`,
/// `"not an ethernet interface"`, `"name does not match --interfaces"`,
/// `"name excluded by default (container, cni or tunnel interface)"`.
pub fn eligible(iface: &Interface, interfaces: Option<&Regex>) -> Result<(), &'static str> {
    if iface.loopback {
        return Err("loopback interface");
    }
    if !iface.up {
        return Err("interface is down");
    }
    if !iface.running {
        return Err("interface is not running (no carrier)");
    }
    if !iface.broadcast {
        return Err("interface cannot broadcast");
    }
    if !iface.ether {
        return Err("not an ethernet interface");
    }
    match interfaces {
        Some(regex) if !regex.is_match(&iface.name) => Err("name does not match --interfaces"),
        Some(_) => Ok(()),
        None if !default_candidate(&iface.name) => {
            Err("name excluded by default (container, cni or tunnel interface)")
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth0_files() -> SysfsFiles<'static> {
        SysfsFiles {
            ifindex: "4\n",
            address: "02:fc:00:00:00:01\n",
            flags: "0x1003\n",
            operstate: "up\n",
            link_type: "1\n",
        }
    }

    fn eth0() -> Interface {
        parse_interface("eth0".to_owned(), &eth0_files()).expect("eth0 fixture parses")
    }

    fn named(name: &str) -> Interface {
        Interface {
            name: name.to_owned(),
            ..eth0()
        }
    }

    fn regex(pattern: &str) -> Regex {
        Regex::new(pattern).expect("test regex compiles")
    }

    #[test]
    fn ifindex_is_decimal_with_a_trailing_newline() {
        assert_eq!(parse_ifindex("4\n"), Some(4));
        assert_eq!(parse_ifindex("4294967295"), Some(u32::MAX));
    }

    #[test]
    fn ifindex_zero_negative_or_garbage_is_rejected() {
        assert_eq!(parse_ifindex("0\n"), None);
        assert_eq!(parse_ifindex("-1\n"), None);
        assert_eq!(parse_ifindex("eth0\n"), None);
        assert_eq!(parse_ifindex(""), None);
    }

    #[test]
    fn flags_are_hex_with_0x_prefix() {
        assert_eq!(parse_flags("0x1003\n"), Some(0x1003));
        assert_eq!(parse_flags("0x9\n"), Some(0x9));
        assert_eq!(parse_flags("1003\n"), None);
        assert_eq!(parse_flags("0xzz\n"), None);
    }

    #[test]
    fn link_type_is_decimal() {
        assert_eq!(parse_link_type("1\n"), Some(ARPHRD_ETHER));
        assert_eq!(parse_link_type("772\n"), Some(772));
        assert_eq!(parse_link_type("ether\n"), None);
    }

    #[test]
    fn mac_is_six_hex_pairs() {
        assert_eq!(
            parse_mac("02:fc:00:00:00:01\n"),
            Some([0x02, 0xfc, 0, 0, 0, 0x01])
        );
        assert_eq!(
            parse_mac("AE:4D:7B:54:3D:92"),
            Some([0xae, 0x4d, 0x7b, 0x54, 0x3d, 0x92])
        );
    }

    #[test]
    fn mac_of_other_lengths_or_malformed_is_none() {
        assert_eq!(parse_mac("00:00:00:00\n"), None, "tunl0 has 4 bytes");
        assert_eq!(parse_mac("02:fc:00:00:00:01:02\n"), None);
        assert_eq!(parse_mac("2:fc:00:00:00:01\n"), None);
        assert_eq!(parse_mac("02:fc:00:00:00:0g\n"), None);
        assert_eq!(parse_mac("+2:fc:00:00:00:01\n"), None);
        assert_eq!(parse_mac("\n"), None);
    }

    #[test]
    fn operstate_up_and_unknown_count_as_running() {
        assert!(operstate_running("up\n"));
        assert!(operstate_running("unknown\n"));
        assert!(!operstate_running("down\n"));
        assert!(!operstate_running("lowerlayerdown\n"));
        assert!(!operstate_running("dormant\n"));
    }

    #[test]
    fn ethernet_uplink_parses_as_up_running_broadcast_ethernet() {
        assert_eq!(
            eth0(),
            Interface {
                name: "eth0".to_owned(),
                index: 4,
                mac: [0x02, 0xfc, 0, 0, 0, 0x01],
                up: true,
                running: true,
                broadcast: true,
                loopback: false,
                ether: true,
            }
        );
    }

    #[test]
    fn loopback_parses_as_loopback_and_not_ethernet() {
        let files = SysfsFiles {
            ifindex: "1\n",
            address: "00:00:00:00:00:00\n",
            flags: "0x9\n",
            operstate: "unknown\n",
            link_type: "772\n",
        };
        let lo = parse_interface("lo".to_owned(), &files).expect("lo fixture parses");
        assert!(lo.loopback && lo.up && lo.running);
        assert!(!lo.broadcast && !lo.ether);
    }

    #[test]
    fn admin_down_interface_parses_as_not_up_and_not_running() {
        let files = SysfsFiles {
            ifindex: "2\n",
            address: "56:34:69:b5:c3:75\n",
            flags: "0x82\n",
            operstate: "down\n",
            link_type: "1\n",
        };
        let ifb0 = parse_interface("ifb0".to_owned(), &files).expect("ifb0 fixture parses");
        assert!(!ifb0.up && !ifb0.running);
        assert!(ifb0.broadcast && ifb0.ether);
    }

    #[test]
    fn running_flag_is_honoured_even_when_operstate_says_down() {
        let files = SysfsFiles {
            flags: "0x1043\n",
            operstate: "down\n",
            ..eth0_files()
        };
        let iface = parse_interface("eth0".to_owned(), &files).expect("fixture parses");
        assert!(iface.running);
    }

    #[test]
    fn tunnel_with_a_four_byte_address_parses_with_a_zero_mac() {
        let files = SysfsFiles {
            ifindex: "7\n",
            address: "00:00:00:00\n",
            flags: "0x80\n",
            operstate: "down\n",
            link_type: "768\n",
        };
        let tunl0 = parse_interface("tunl0".to_owned(), &files).expect("tunl0 fixture parses");
        assert_eq!(tunl0.mac, [0; 6]);
        assert!(!tunl0.ether);
    }

    #[test]
    fn unparseable_file_is_named_in_the_error() {
        let bad_index = SysfsFiles {
            ifindex: "x\n",
            ..eth0_files()
        };
        let bad_flags = SysfsFiles {
            flags: "1003\n",
            ..eth0_files()
        };
        let bad_type = SysfsFiles {
            link_type: "\n",
            ..eth0_files()
        };
        assert_eq!(
            parse_interface("a".to_owned(), &bad_index).err(),
            Some("ifindex")
        );
        assert_eq!(
            parse_interface("a".to_owned(), &bad_flags).err(),
            Some("flags")
        );
        assert_eq!(
            parse_interface("a".to_owned(), &bad_type).err(),
            Some("type")
        );
    }

    #[test]
    fn container_cni_and_tunnel_names_are_not_default_candidates() {
        for name in [
            "docker0",
            "veth1a2b3c",
            "cali0123456789a",
            "flannel.1",
            "cni0",
            "kube-ipvs0",
            "lxc12345",
            "virbr0",
            "tunl0",
            "cbr0",
            "dummy0",
            "lxcbr0",
            "nodelocaldns",
        ] {
            assert!(!default_candidate(name), "{name} should be excluded");
        }
    }

    #[test]
    fn uplink_names_are_default_candidates() {
        for name in [
            "eth0",
            "ens3",
            "enp0s31f6",
            "bond0",
            "br0",
            "eth0.100",
            "wlan0",
        ] {
            assert!(default_candidate(name), "{name} should be a candidate");
        }
    }

    #[test]
    fn ethernet_uplink_is_eligible() {
        assert_eq!(eligible(&eth0(), None), Ok(()));
    }

    #[test]
    fn each_failed_check_gives_its_reason() {
        let cases = [
            (
                Interface {
                    loopback: true,
                    ..eth0()
                },
                "loopback interface",
            ),
            (
                Interface {
                    up: false,
                    ..eth0()
                },
                "interface is down",
            ),
            (
                Interface {
                    running: false,
                    ..eth0()
                },
                "interface is not running (no carrier)",
            ),
            (
                Interface {
                    broadcast: false,
                    ..eth0()
                },
                "interface cannot broadcast",
            ),
            (
                Interface {
                    ether: false,
                    ..eth0()
                },
                "not an ethernet interface",
            ),
            (
                named("docker0"),
                "name excluded by default (container, cni or tunnel interface)",
            ),
        ];
        for (iface, reason) in cases {
            assert_eq!(eligible(&iface, None), Err(reason), "{iface:?}");
        }
    }

    #[test]
    fn interfaces_regex_replaces_the_default_name_exclusion() {
        let veths = regex(r"^veth");
        assert_eq!(eligible(&named("veth1a2b3c"), Some(&veths)), Ok(()));
        assert_eq!(
            eligible(&named("eth0"), Some(&veths)),
            Err("name does not match --interfaces")
        );
    }

    #[test]
    fn interfaces_regex_does_not_override_the_link_checks() {
        let any = regex(".*");
        let down = Interface {
            up: false,
            ..eth0()
        };
        let lo = Interface {
            name: "lo".to_owned(),
            loopback: true,
            broadcast: false,
            ether: false,
            ..eth0()
        };
        assert_eq!(eligible(&down, Some(&any)), Err("interface is down"));
        assert_eq!(eligible(&lo, Some(&any)), Err("loopback interface"));
    }

    #[test]
    fn interfaces_regex_matches_anywhere_unless_anchored() {
        let unanchored = regex("eth");
        let anchored = regex(r"^eth\d+$");
        let vlan = named("eth0.100");
        assert_eq!(eligible(&vlan, Some(&unanchored)), Ok(()));
        assert_eq!(
            eligible(&vlan, Some(&anchored)),
            Err("name does not match --interfaces")
        );
    }

    fn write_interface(dir: &Path, name: &str, files: &SysfsFiles<'_>) -> io::Result<()> {
        let iface = dir.join(name);
        fs::create_dir(&iface)?;
        fs::write(iface.join("ifindex"), files.ifindex)?;
        fs::write(iface.join("address"), files.address)?;
        fs::write(iface.join("flags"), files.flags)?;
        fs::write(iface.join("operstate"), files.operstate)?;
        fs::write(iface.join("type"), files.link_type)?;
        Ok(())
    }

    #[test]
    fn list_in_reads_a_sysfs_like_tree_sorted_by_index_and_skips_plain_files() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        write_interface(dir.path(), "eth0", &eth0_files())?;
        let lo = SysfsFiles {
            ifindex: "1\n",
            address: "00:00:00:00:00:00\n",
            flags: "0x9\n",
            operstate: "unknown\n",
            link_type: "772\n",
        };
        write_interface(dir.path(), "lo", &lo)?;
        fs::write(dir.path().join("bonding_masters"), "\n")?;
        // An interface that vanished halfway through: its directory has no files.
        fs::create_dir(dir.path().join("gone0"))?;

        let listed = list_in(dir.path())?;
        let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0"]);
        assert_eq!(listed.get(1), Some(&eth0()));
        Ok(())
    }

    #[test]
    fn list_in_fails_on_an_unparseable_file_and_names_it() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let files = SysfsFiles {
            flags: "garbage\n",
            ..eth0_files()
        };
        write_interface(dir.path(), "eth0", &files)?;
        let err = list_in(dir.path()).err();
        assert_eq!(
            err.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::InvalidData)
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("eth0") && message.contains("flags"),
            "{message}"
        );
        Ok(())
    }

    #[test]
    fn list_finds_the_loopback_interface_of_this_machine() -> io::Result<()> {
        let interfaces = list()?;
        assert!(
            interfaces
                .iter()
                .any(|i| i.name == "lo" && i.loopback && !i.ether),
            "{interfaces:?}"
        );
        Ok(())
    }
}
