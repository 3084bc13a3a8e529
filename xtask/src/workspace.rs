//! Where the workspace and its build output are, and how to call cargo on it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The CRM workspace this xtask belongs to.
pub struct Workspace {
    /// The directory of the workspace `Cargo.toml`.
    pub root: PathBuf,
    /// Cargo's target directory (`CARGO_TARGET_DIR` or `<root>/target`).
    pub target: PathBuf,
}

impl Workspace {
    /// The workspace that contains this crate; found at compile time, so it works from any
    /// current directory.
    pub fn locate() -> Self {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .expect("xtask lives one level below the workspace root")
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => {
                std::path::absolute(PathBuf::from(dir)).unwrap_or_else(|_| root.join("target"))
            }
            None => root.join("target"),
        };
        Self { root, target }
    }

    /// `cargo` (the same one that runs us, when known), run from the workspace root.
    pub fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command.current_dir(&self.root);
        command
    }

    /// A short, stable hash of the workspace path: two clones on one machine get different
    /// state directories under /tmp.
    pub fn short_hash(&self) -> String {
        // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.root.as_os_str().as_encoded_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{:08x}", hash >> 32)
    }
}
