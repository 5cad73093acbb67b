//! SSH host key checking against an OpenSSH `known_hosts` file: no trust on first use. A host
//! key is accepted only when a line names the host and carries exactly that key, and no
//! `@revoked` line carries it. The lines are read with the `ssh-key` crate's parser.
//!
//! Supported: plain host names and addresses, `[host]:port` for other ports, several names per
//! line, and hashed names (`|1|salt|hash`, as `ssh-keyscan -H` and OpenSSH's `HashKnownHosts
//! yes` write them: HMAC-SHA1 of the name keyed with the salt). Not supported (such lines never
//! match): wildcards and negations, and `@cert-authority`.

use hmac::{Hmac, KeyInit, Mac};
use ssh_key::known_hosts::{Entry as Line, HostPatterns, Marker};

/// The hosts a line names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hosts {
    /// Plain names (lower case), `[host]:port` for ports other than 22.
    Names(Vec<String>),
    /// One hashed name: HMAC-SHA1 of the name, keyed with the salt.
    Hashed { salt: Vec<u8>, hash: [u8; 20] },
}

impl Hosts {
    fn names(&self, name: &str) -> bool {
        match self {
            Hosts::Names(names) => names.iter().any(|n| n == name),
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
        }
    }
}

/// One usable line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    hosts: Hosts,
    /// The host key blob, as the SSH server sends it.
    key: Vec<u8>,
    revoked: bool,
}

impl Entry {
    /// The line's entry, unless it is a comment, blank, malformed or of a kind not supported.
    fn parse(line: &str) -> Option<Entry> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let parsed: Line = line.parse().ok()?;
        let revoked = match parsed.marker() {
            None => false,
            Some(Marker::Revoked) => true,
            Some(_) => return None,
        };
        let key = parsed.public_key().to_bytes().ok()?;
        let hosts = match parsed.host_patterns() {
            HostPatterns::Patterns(patterns) => Hosts::Names(
                patterns
                    .iter()
                    .filter(|h| !h.contains(['*', '?', '!']))
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
            HostPatterns::HashedName { salt, hash } => Hosts::Hashed {
                salt: salt.clone(),
                hash: *hash,
            },
        };
        Some(Entry {
            hosts,
            key,
            revoked,
        })
    }
}

/// A parsed `known_hosts` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Reads the file's text; lines that cannot be used are skipped.
    pub fn parse(text: &str) -> KnownHosts {
        KnownHosts {
            entries: text.lines().filter_map(Entry::parse).collect(),
        }
    }

    /// Whether `key` (the raw host key blob) is known for `host` on `port`. A revoked key is
    /// refused whatever host its line names.
    pub fn accepts(&self, host: &str, port: u16, key: &[u8]) -> bool {
        let host = host.to_ascii_lowercase();
        let name = if port == 22 {
            host
        } else {
            format!("[{host}]:{port}")
        };
        if self.entries.iter().any(|e| e.revoked && e.key == key) {
            return false;
        }
        self.entries
            .iter()
            .any(|e| !e.revoked && e.key == key && e.hosts.names(&name))
    }
}

/// Host and port of an SSH URL: `ssh://[user@]host[:port]/path` or `[user@]host:path`.
pub fn ssh_host(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next()?;
        let hostport = authority.rsplit('@').next()?;
        if let Some(inner) = hostport.strip_prefix('[') {
            let (h, after) = inner.split_once(']')?;
            let port = after
                .strip_prefix(':')
                .map_or(Some(22), |p| p.parse().ok())?;
            return Some((h.to_string(), port));
        }
        return match hostport.split_once(':') {
            Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
            None => Some((hostport.to_string(), 22)),
        };
    }
    if url.contains("://") {
        return None;
    }
    let (before, _) = url.split_once(':')?;
    let host = before.rsplit('@').next()?;
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_string(), 22))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// Two real ed25519 public keys (type and base64 blob, as in a `.pub` file).
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID3khepmvfTYuxOuLlYgOYmljQk9fpnkZwD5/KtNO7j1";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM6C28Ad5m0abFZDaii2FLh4qFEuVM34qcM3wPenmCll";

    /// The blob a server sends for a key of a `.pub` line.
    fn blob(public: &str) -> Vec<u8> {
        let b64 = public.split_whitespace().nth(1).expect("blob");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    }

    /// The hashed form of `name` with `salt`, as `|1|salt|hash`.
    fn hashed(name: &str, salt: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(salt).expect("key");
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!("|1|{}|{}", b64.encode(salt), b64.encode(hash))
    }

    #[test]
    fn accepts_only_the_listed_key_for_the_listed_host() {
        let kh = KnownHosts::parse(&format!(
            "# comment\ngit.example.com,10.0.0.5 {KEY}\n[git.example.com]:2222 {OTHER} extra\n"
        ));
        let (key, other) = (blob(KEY), blob(OTHER));
        assert!(kh.accepts("git.example.com", 22, &key));
        assert!(kh.accepts("GIT.example.com", 22, &key));
        assert!(kh.accepts("10.0.0.5", 22, &key));
        assert!(!kh.accepts("git.example.com", 22, &other));
        assert!(!kh.accepts("evil.example.com", 22, &key));
        assert!(!kh.accepts("git.example.com", 2222, &key));
        assert!(kh.accepts("git.example.com", 2222, &other));
    }

    /// What servers offer: ECDSA (P-256) and RSA host keys, besides ed25519.
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEay1Bbd/mY4PhWw4H7bzwYI6fu9d6OE/PDeRD4V9fV7/ASrP0nU4w+LRS1zeXPpOB8g60M4IJv1J/U5cA7eBKI=";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC89SCZISEiEauOMdmVCs394B5ZWZvZTA9A2fqTbncuflHmxZ0FAkyC+FSN5MKRGeJSwosuwno6ln/PSpr3I28SE1idSmuiLSBTRVX7cfN/dCtxUWawFSzpMOe+qYgo+6Qx0HX49w+lIY4IErqXf/0S0Sqhaghvce7Yo2qraoygHdI7Vk3QE/95MimCgnAHDTUAKIipSntwhh6mtfSOsoO6yrFT1v+SqNuNuRp93TEnZrp5CLidcqlb73pApfe5JOYsfCvyC80COlpWoNjqPMegiyv3HoQ4GVAdCaYDVXHmAwRhq9ofpUKS1sACOlpQEZmzKbRQG6FobbaXs4nAj3/V";

    #[test]
    fn every_common_key_type_is_read_as_the_blob_the_server_sends() {
        for key in [KEY, ECDSA, RSA] {
            let kh = KnownHosts::parse(&format!("git.example.com {key}\n"));
            assert!(kh.accepts("git.example.com", 22, &blob(key)), "{key}");
        }
    }

    #[test]
    fn a_hashed_name_accepts_its_host_only() {
        let kh = KnownHosts::parse(&format!(
            "{} {KEY}\n{} {OTHER}\n",
            hashed("git.example.com", b"0123456789abcdef0123"),
            hashed("[git.example.com]:2222", b"fedcba9876543210fedc"),
        ));
        let (key, other) = (blob(KEY), blob(OTHER));
        assert!(kh.accepts("git.example.com", 22, &key));
        assert!(!kh.accepts("git.example.org", 22, &key));
        assert!(!kh.accepts("git.example.com", 22, &other));
        assert!(kh.accepts("git.example.com", 2222, &other));
        assert!(!kh.accepts("git.example.com", 2222, &key));
    }

    #[test]
    fn revoked_wildcard_and_malformed_lines_never_accept() {
        let kh = KnownHosts::parse(&format!(
            "git.example.com {KEY}\n@revoked * {KEY}\n*.example.com {OTHER}\n@cert-authority git.example.com {OTHER}\n"
        ));
        assert!(!kh.accepts("git.example.com", 22, &blob(KEY)), "revoked");
        assert!(
            !kh.accepts("git.example.com", 22, &blob(OTHER)),
            "wildcard and CA lines are skipped"
        );
        assert!(
            KnownHosts::parse("garbage\nhost ssh-rsa !!!notbase64\n|1|x|y ssh-ed25519 AAAA\n")
                .entries
                .is_empty()
        );
    }

    #[test]
    fn ssh_urls_give_host_and_port() {
        assert_eq!(
            ssh_host("ssh://git@example.com/pools.git"),
            Some(("example.com".into(), 22))
        );
        assert_eq!(
            ssh_host("ssh://git@example.com:2222/pools.git"),
            Some(("example.com".into(), 2222))
        );
        assert_eq!(
            ssh_host("ssh://[fd00::5]:2222/p.git"),
            Some(("fd00::5".into(), 2222))
        );
        assert_eq!(
            ssh_host("git@example.com:team/pools.git"),
            Some(("example.com".into(), 22))
        );
        assert_eq!(ssh_host("https://example.com/pools.git"), None);
        assert_eq!(ssh_host("/srv/git/pools.git"), None);
    }
}
