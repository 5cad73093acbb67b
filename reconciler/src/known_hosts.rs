//! SSH host key checking against an OpenSSH `known_hosts` file: no trust on first use. A host
//! key is accepted only when a line names the host and carries exactly that key, and no
//! `@revoked` line carries it.
//!
//! Supported: plain host names and addresses, `[host]:port` for other ports, several names per
//! line. Not supported (such lines never match): hashed names (`|1|...`, as written by
//! `HashKnownHosts yes`), wildcards, and `@cert-authority`.

use base64::Engine as _;

/// One usable line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    hosts: Vec<String>,
    key: Vec<u8>,
    revoked: bool,
}

/// A parsed `known_hosts` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Reads the file's text; lines that cannot be used are skipped.
    pub fn parse(text: &str) -> KnownHosts {
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let mut first = fields.next()?;
                let mut revoked = false;
                if first.starts_with('@') {
                    if first != "@revoked" {
                        return None;
                    }
                    revoked = true;
                    first = fields.next()?;
                }
                let _key_type = fields.next()?;
                let key = base64::engine::general_purpose::STANDARD
                    .decode(fields.next()?)
                    .ok()?;
                let hosts = first
                    .split(',')
                    .filter(|h| !h.starts_with('|') && !h.contains(['*', '?', '!']))
                    .map(str::to_ascii_lowercase)
                    .collect();
                Some(Entry {
                    hosts,
                    key,
                    revoked,
                })
            })
            .collect();
        KnownHosts { entries }
    }

    /// Whether `key` (the raw host key blob) is known for `host` on `port`.
    pub fn accepts(&self, host: &str, port: u16, key: &[u8]) -> bool {
        let host = host.to_ascii_lowercase();
        let name = if port == 22 {
            host.clone()
        } else {
            format!("[{host}]:{port}")
        };
        if self.entries.iter().any(|e| e.revoked && e.key == key) {
            return false;
        }
        self.entries
            .iter()
            .any(|e| !e.revoked && e.key == key && e.hosts.contains(&name))
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

    const KEY: &[u8] = b"a host key blob";

    fn b64(k: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(k)
    }

    #[test]
    fn accepts_only_the_listed_key_for_the_listed_host() {
        let kh = KnownHosts::parse(&format!(
            "# comment\ngit.example.com,10.0.0.5 ssh-ed25519 {}\n[git.example.com]:2222 ssh-ed25519 {} extra\n",
            b64(KEY),
            b64(b"other")
        ));
        assert!(kh.accepts("git.example.com", 22, KEY));
        assert!(kh.accepts("GIT.example.com", 22, KEY));
        assert!(kh.accepts("10.0.0.5", 22, KEY));
        assert!(!kh.accepts("git.example.com", 22, b"forged"));
        assert!(!kh.accepts("evil.example.com", 22, KEY));
        assert!(!kh.accepts("git.example.com", 2222, KEY));
        assert!(kh.accepts("git.example.com", 2222, b"other"));
    }

    #[test]
    fn revoked_hashed_and_wildcard_lines_never_accept() {
        let kh = KnownHosts::parse(&format!(
            "git.example.com ssh-ed25519 {k}\n@revoked * ssh-ed25519 {k}\n|1|c2FsdA==|aGFzaA== ssh-ed25519 {o}\n*.example.com ssh-ed25519 {o}\n",
            k = b64(KEY),
            o = b64(b"other")
        ));
        assert!(!kh.accepts("git.example.com", 22, KEY), "revoked");
        assert!(
            !kh.accepts("git.example.com", 22, b"other"),
            "hashed and wildcard lines are skipped"
        );
        assert!(
            KnownHosts::parse("garbage\nhost ssh-rsa !!!notbase64\n")
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
