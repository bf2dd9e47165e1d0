//! The JSON that `warden status --json` prints.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub listen_port: u16,
    pub programs: Vec<Program>,
    pub attachment: Attachment,
    pub selected: Vec<Selected>,
    #[serde(default)]
    pub counters: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Program {
    pub name: String,
    pub id: u32,
}

/// How the programs outlive the daemon: `fail_mode`, whether the links are pinned now, where,
/// and whether this run re-adopted pins a previous run left.
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    pub fail_mode: String,
    pub pinned: bool,
    pub pin_dir: String,
    pub adopted: bool,
}

/// A selected cgroup: its path, its current id, and why it is selected ("config", "unit", "exec").
#[derive(Debug, Clone, Deserialize)]
pub struct Selected {
    pub path: String,
    pub id: u64,
    pub source: String,
}

impl Status {
    pub fn selected(&self, path: &str) -> Option<&Selected> {
        self.selected.iter().find(|s| s.path == path)
    }

    pub fn program_ids(&self) -> Vec<u32> {
        self.programs.iter().map(|p| p.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let status: Status = serde_json::from_str(
            r#"{"pid":10,"listen_port":15443,
                "programs":[{"name":"warden_connect4","id":77},{"name":"warden_connect6","id":78}],
                "attachment":{"fail_mode":"closed","pinned":true,"pin_dir":"/p","adopted":false},
                "selected":[{"path":"/warden-test-x","id":4242,"source":"config"}],
                "counters":{"exchanges":3}}"#,
        )
        .unwrap();
        assert_eq!(status.program_ids(), vec![77, 78]);
        assert_eq!(status.selected("/warden-test-x").map(|s| s.id), Some(4242));
        assert_eq!(status.counters["exchanges"], 3);
        assert!(status.attachment.pinned && !status.attachment.adopted);
    }
}
