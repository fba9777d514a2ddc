//! Which store serves a request, under which name: `--remap` rules first,
//! then `--per-client-root` (as dnsmasq's `tftp-unique-root`): a request
//! from a board is served from `ROOT/<its IP>/` or `ROOT/<its MAC>/` when
//! that directory exists, confined there as the root itself confines, and
//! otherwise from ROOT (`--per-client-fallback root`) or not at all
//! (`refuse`: ERROR 1).

use crate::remap::{self, Outcome, Rule};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tftplab::options::Direction;
use tftplab::proto::Refusal;
use tftplab::runtime::{Resolve, Resolved};
use tftplab::store::{Store, StoreConfig};
use tftplab::wire::ErrorCode;

/// How a board's own directory is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKey {
    /// `192.168.50.10/` (IPv6: `fd00::10/`).
    Ip,
    /// `dc-a6-32-01-02-03/`, from the kernel's neighbour table (IPv4).
    Mac,
}

/// What a board without a directory of its own gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// The shared root.
    Root,
    /// ERROR 1: only boards with a directory are served.
    Refuse,
}

pub struct Resolver {
    pub rules: Vec<Rule>,
    pub per_client: Option<(ClientKey, Fallback)>,
    /// Stores opened for boards' directories, by directory.
    stores: Mutex<HashMap<PathBuf, Arc<Store>>>,
    /// Where the neighbour table is read (a test's own file).
    arp: PathBuf,
}

impl Resolver {
    pub fn new(rules: Vec<Rule>, per_client: Option<(ClientKey, Fallback)>) -> Resolver {
        Resolver {
            rules,
            per_client,
            stores: Mutex::new(HashMap::new()),
            arp: PathBuf::from("/proc/net/arp"),
        }
    }

    /// The lines `serve` logs at start: each rule in order, and the
    /// per-board roots.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("remap rule {} (line {}): {}", i + 1, r.line, r.flags))
            .collect();
        if let Some((key, fallback)) = self.per_client {
            let key = match key {
                ClientKey::Ip => "ROOT/<client IP>/",
                ClientKey::Mac => "ROOT/<client MAC>/",
            };
            let otherwise = match fallback {
                Fallback::Root => "else ROOT",
                Fallback::Refuse => "else refused",
            };
            lines.push(format!("per-client root: {key}, {otherwise}"));
        }
        lines
    }

    /// `ip`'s MAC from the neighbour table, as `dc-a6-32-01-02-03`.
    fn mac_of(&self, ip: IpAddr) -> Option<String> {
        let table = std::fs::read_to_string(&self.arp).ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, mac) = (f.first()?, f.get(3)?);
            (addr.parse::<IpAddr>().ok()? == ip && *mac != "00:00:00:00:00:00")
                .then(|| mac.to_ascii_lowercase().replace(':', "-"))
        })
    }

    /// The board's own store, if its directory exists.
    fn client_store(&self, main: &Arc<Store>, dir: &Path) -> Result<Option<Arc<Store>>, String> {
        let full = main.root().join(dir);
        if !full.is_dir() {
            return Ok(None);
        }
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| "store cache poisoned".to_string())?;
        if let Some(s) = stores.get(&full) {
            return Ok(Some(s.clone()));
        }
        let mut config: StoreConfig = main.config().clone();
        config.root = full.clone();
        let store = Arc::new(Store::new(config).map_err(|e| format!("{}: {e}", full.display()))?);
        stores.insert(full, store.clone());
        Ok(Some(store))
    }
}

impl Resolve for Resolver {
    fn resolve(
        &self,
        store: &Arc<Store>,
        peer: SocketAddr,
        direction: Direction,
        name: &str,
    ) -> Result<Resolved, (Refusal, String)> {
        let ip = peer.ip().to_canonical();
        let mut notes = Vec::new();
        let mut name = name.to_string();
        if !self.rules.is_empty() {
            match remap::apply(&self.rules, &name, ip, direction) {
                Outcome::Name(to, lines) => {
                    if !lines.is_empty() {
                        notes.push(format!("remapped by rules on lines {lines:?}"));
                    }
                    name = to;
                }
                Outcome::Refused { line, message } => {
                    return Err((
                        Refusal::new(ErrorCode::ACCESS_VIOLATION, message),
                        format!("refused by the remap rule on line {line}"),
                    ));
                }
            }
        }
        let mut chosen = store.clone();
        if let Some((key, fallback)) = self.per_client {
            let dir = match key {
                ClientKey::Ip => Some(ip.to_string()),
                ClientKey::Mac => self.mac_of(ip),
            };
            let own = match &dir {
                Some(d) => self
                    .client_store(store, Path::new(d))
                    .map_err(|e| (Refusal::new(ErrorCode::UNDEFINED, "server error"), e))?,
                None => None,
            };
            match (own, fallback) {
                (Some(s), _) => {
                    notes.push(format!("root {}/", dir.unwrap_or_default()));
                    chosen = s;
                }
                (None, Fallback::Root) => notes.push("shared root".into()),
                (None, Fallback::Refuse) => {
                    return Err((
                        Refusal::new(ErrorCode::FILE_NOT_FOUND, "File not found"),
                        format!(
                            "no directory of its own ({}) and --per-client-fallback refuse",
                            dir.unwrap_or_else(|| "no MAC in the neighbour table".into())
                        ),
                    ));
                }
            }
        }
        Ok(Resolved {
            store: chosen,
            name,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(r: &Resolver, store: &Arc<Store>, peer: &str, name: &str) -> Result<Vec<u8>, u16> {
        let peer: SocketAddr = peer.parse().unwrap();
        let to = r
            .resolve(store, peer, Direction::Read, name)
            .map_err(|(refusal, _)| refusal.code.0)?;
        let mut src = to.store.open_read(&to.name).map_err(|e| e.error_code().0)?;
        let mut out = vec![0; 64];
        let n = tftplab::data::Source::read_at(&mut src, 0, &mut out).unwrap();
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn a_board_gets_its_own_directory_confined_or_the_shared_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("127.0.0.2")).unwrap();
        std::fs::write(root.path().join("127.0.0.2/config.txt"), b"board 2").unwrap();
        std::fs::write(root.path().join("config.txt"), b"shared").unwrap();
        std::fs::write(root.path().join("secret"), b"root only").unwrap();
        let store = Arc::new(Store::new(StoreConfig::new(root.path())).unwrap());
        let r = Resolver::new(Vec::new(), Some((ClientKey::Ip, Fallback::Root)));
        assert_eq!(
            served(&r, &store, "127.0.0.2:1000", "config.txt").unwrap(),
            b"board 2"
        );
        assert_eq!(
            served(&r, &store, "127.0.0.3:1000", "config.txt").unwrap(),
            b"shared"
        );
        // Confined to its own directory: the shared root is out of reach.
        assert_eq!(served(&r, &store, "127.0.0.2:1000", "../secret"), Err(2));
        let strict = Resolver::new(Vec::new(), Some((ClientKey::Ip, Fallback::Refuse)));
        assert_eq!(
            served(&strict, &store, "127.0.0.3:1000", "config.txt"),
            Err(1)
        );
    }

    #[test]
    fn a_mac_comes_from_the_neighbour_table_and_rules_run_first() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("dc-a6-32-01-02-03")).unwrap();
        std::fs::write(root.path().join("dc-a6-32-01-02-03/start4.elf"), b"own").unwrap();
        let arp = root.path().join("arp");
        std::fs::write(
            &arp,
            "IP address       HW type     Flags       HW address            Mask     Device\n\
             10.0.0.7         0x1         0x2         DC:A6:32:01:02:03     *        eth0\n",
        )
        .unwrap();
        let store = Arc::new(Store::new(StoreConfig::new(root.path())).unwrap());
        let rules = remap::parse("r ^[0-9a-f]{8}/ ", "map").unwrap();
        let mut r = Resolver::new(rules, Some((ClientKey::Mac, Fallback::Refuse)));
        r.arp = arp;
        // The rpi4's serial prefix is stripped, then its MAC picks the root.
        assert_eq!(
            served(&r, &store, "10.0.0.7:2000", "9ffefdef/start4.elf").unwrap(),
            b"own"
        );
        assert_eq!(served(&r, &store, "10.0.0.8:2000", "start4.elf"), Err(1));
    }
}
