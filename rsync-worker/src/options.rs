//! What a pull does: [`SyncOptions`], and the mapping of the rsync flags DR-Syncer users
//! put in `pvcConfig.dataSyncConfig.rsyncOptions` onto them.
//!
//! Existing manifests carry rsync command-line flags. We do not run rsync, so every flag is
//! mapped explicitly; a flag we do not understand is an error (never silently ignored),
//! so that a manifest never believes it asked for something that does not happen.

use std::time::Duration;

/// Why an rsync option could not be mapped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    /// The flag is not one we implement.
    #[error("unsupported rsync option {0:?}")]
    Unsupported(String),
    /// The flag needs a value and none was given.
    #[error("rsync option {0:?} needs a value")]
    MissingValue(String),
    /// The value of a flag could not be parsed.
    #[error("invalid value {value:?} for rsync option {option:?}")]
    InvalidValue {
        /// The flag.
        option: String,
        /// The value we could not parse.
        value: String,
    },
    /// An exclude pattern is not a valid glob.
    #[error("invalid exclude pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What globset said.
        reason: String,
    },
}

/// Options of one pull. Defaults mirror `rsync -a --delete --partial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// rsync-style exclude patterns (a pattern without `/` matches a name at any depth,
    /// a leading `/` anchors at the root, a trailing `/` matches directories only).
    pub excludes: Vec<String>,
    /// Bandwidth limit in bytes per second, shared by all streams of the pull.
    pub bwlimit: Option<u64>,
    /// Compare file contents (BLAKE3) instead of size and mtime to decide what to send.
    pub checksum: bool,
    /// Verification sample: also compare the contents of this percentage of files
    /// (chosen by path, the same ones each run) whose size and mtime look current, and
    /// repair those that differ (`verificationMode: sample`). Ignored with `checksum`.
    pub verify_sample_percent: u8,
    /// Compress data frames with zstd.
    pub compress: bool,
    /// zstd level used when `compress` is on.
    pub compress_level: i32,
    /// Report what would change, write nothing.
    pub dry_run: bool,
    /// Delete target entries that are gone at the source (done last).
    pub delete: bool,
    /// Also delete target entries that match an exclude pattern.
    pub delete_excluded: bool,
    /// Turn off the prune guard (see `receiver::guard`): delete even when the source
    /// listing is empty or more than half of the target's files would go. Only the worker
    /// flag `--allow-mass-deletion` sets it (the mapping's `allowMassDataDeletion`), never an
    /// rsync option, so a copied rsync command line cannot switch the guard off.
    pub allow_mass_deletion: bool,
    /// Always send whole files (no delta against the target's basis).
    pub whole_file: bool,
    /// Copy extended attributes (`user.*` and others the kernel lets us read).
    pub xattrs: bool,
    /// Set numeric uid/gid on the target. Only effective when running as root.
    pub owner: bool,
    /// Overall timeout, applied by the binary around the pull.
    pub timeout: Option<Duration>,
    /// Delta window in bytes: bounds memory on both sides (see `delta`); tests use small
    /// windows to exercise multi-window files.
    pub window: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            excludes: Vec::new(),
            bwlimit: None,
            checksum: false,
            verify_sample_percent: 0,
            compress: false,
            compress_level: 3,
            dry_run: false,
            delete: true,
            delete_excluded: false,
            allow_mass_deletion: false,
            whole_file: false,
            xattrs: false,
            owner: nix::unistd::geteuid().is_root(),
            timeout: None,
            window: crate::delta::WINDOW,
        }
    }
}

/// Flags that ask for what we always do (archive mode, sparse, hard links, numeric ids)
/// or that only change rsync's own console output.
const ALWAYS_ON_LONG: &[&str] = &[
    "archive",
    "recursive",
    "links",
    "perms",
    "times",
    "group",
    "owner",
    "devices",
    "specials",
    "hard-links",
    "sparse",
    "numeric-ids",
    "partial",
    "verbose",
    "progress",
    "stats",
    "human-readable",
    "itemize-changes",
    "quiet",
    "delete-after",
    "delete-during",
    "delete-delay",
    "delete-before",
    "omit-dir-times",
    "no-motd",
];

impl SyncOptions {
    /// Applies DR-Syncer `rsyncOptions` (rsync command-line flags) to these options.
    ///
    /// Accepts `--flag`, `--flag=value`, `--flag value` and bundled short flags (`-avz`).
    /// An unknown flag is an error so that no manifest option is silently ignored.
    pub fn apply_rsync_options(&mut self, args: &[String]) -> Result<(), OptionError> {
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                self.apply_long(name, inline, &mut iter)?;
            } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
                for c in shorts.chars() {
                    self.apply_short(c, arg)?;
                }
            } else {
                return Err(OptionError::Unsupported(arg.clone()));
            }
        }
        self.check_excludes()
    }

    fn apply_long<'a>(
        &mut self,
        name: &str,
        inline: Option<String>,
        rest: &mut impl Iterator<Item = &'a String>,
    ) -> Result<(), OptionError> {
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| OptionError::MissingValue(format!("--{name}")))
        };
        match name {
            "exclude" => self.excludes.push(value()?),
            "bwlimit" => self.bwlimit = parse_bwlimit(&value()?)?,
            "checksum" => self.checksum = true,
            "no-checksum" => self.checksum = false,
            "compress" => self.compress = true,
            "no-compress" => self.compress = false,
            "compress-level" => {
                let v = value()?;
                self.compress_level = v.parse().map_err(|_| invalid("--compress-level", &v))?;
                self.compress = self.compress_level > 0;
            }
            "dry-run" => self.dry_run = true,
            "delete" => self.delete = true,
            "no-delete" => self.delete = false,
            "delete-excluded" => {
                self.delete = true;
                self.delete_excluded = true;
            }
            "whole-file" => self.whole_file = true,
            "no-whole-file" => self.whole_file = false,
            "xattrs" => self.xattrs = true,
            "no-xattrs" => self.xattrs = false,
            "no-owner" | "no-group" => self.owner = false,
            "timeout" => {
                let v = value()?;
                let secs: u64 = v.parse().map_err(|_| invalid("--timeout", &v))?;
                self.timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            n if ALWAYS_ON_LONG.contains(&n) => {}
            _ => return Err(OptionError::Unsupported(format!("--{name}"))),
        }
        Ok(())
    }

    fn apply_short(&mut self, c: char, arg: &str) -> Result<(), OptionError> {
        match c {
            // archive, recursive, links, perms, times, group, owner, devices+specials,
            // hard links, sparse, verbose, human-readable, partial+progress, quiet
            'a' | 'r' | 'l' | 'p' | 't' | 'g' | 'o' | 'D' | 'H' | 'S' | 'v' | 'h' | 'P' | 'q' => {}
            'c' => self.checksum = true,
            'z' => self.compress = true,
            'n' => self.dry_run = true,
            'W' => self.whole_file = true,
            'X' => self.xattrs = true,
            _ => return Err(OptionError::Unsupported(format!("-{c} (in {arg:?})"))),
        }
        Ok(())
    }

    fn check_excludes(&self) -> Result<(), OptionError> {
        crate::excludes::Excludes::new(&self.excludes)
            .map(|_| ())
            .map_err(|e| OptionError::BadPattern {
                pattern: e.pattern,
                reason: e.reason,
            })
    }
}

fn invalid(option: &str, value: &str) -> OptionError {
    OptionError::InvalidValue {
        option: option.to_string(),
        value: value.to_string(),
    }
}

/// Parses an rsync `--bwlimit` value: a number in KiB/s by default, or with a suffix
/// (`B`, `K`, `M`, `G`, powers of 1024). `0` means no limit, as in rsync.
pub fn parse_bwlimit(value: &str) -> Result<Option<u64>, OptionError> {
    let v = value.trim();
    let (num, mult) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'B' => 1,
                'K' => 1024,
                'M' => 1024 * 1024,
                'G' => 1024 * 1024 * 1024,
                _ => return Err(invalid("--bwlimit", value)),
            };
            (&v[..i], mult)
        }
        _ => (v, 1024),
    };
    let n: f64 = num.parse().map_err(|_| invalid("--bwlimit", value))?;
    if !n.is_finite() || n < 0.0 {
        return Err(invalid("--bwlimit", value));
    }
    let bytes = (n * mult as f64) as u64;
    Ok((bytes > 0).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(args: &[&str]) -> Result<SyncOptions, OptionError> {
        let mut o = SyncOptions::default();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        o.apply_rsync_options(&args).map(|_| o)
    }

    #[test]
    fn maps_common_flags() {
        let o = apply(&[
            "-avz",
            "--exclude=*.tmp",
            "--exclude",
            "cache/",
            "--bwlimit=2M",
            "--checksum",
            "--dry-run",
            "--partial",
            "--delete",
        ])
        .unwrap();
        assert!(o.compress && o.checksum && o.dry_run && o.delete);
        assert_eq!(o.excludes, vec!["*.tmp".to_string(), "cache/".to_string()]);
        assert_eq!(o.bwlimit, Some(2 * 1024 * 1024));
    }

    #[test]
    fn bwlimit_units() {
        assert_eq!(parse_bwlimit("100").unwrap(), Some(100 * 1024));
        assert_eq!(parse_bwlimit("1.5K").unwrap(), Some(1536));
        assert_eq!(parse_bwlimit("0").unwrap(), None);
        assert!(parse_bwlimit("fast").is_err());
    }

    #[test]
    fn no_delete_and_timeout() {
        let o = apply(&["--no-delete", "--timeout=30"]).unwrap();
        assert!(!o.delete);
        assert_eq!(o.timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn unknown_options_are_errors() {
        assert!(matches!(
            apply(&["--inplace"]),
            Err(OptionError::Unsupported(_))
        ));
        assert!(matches!(apply(&["-avA"]), Err(OptionError::Unsupported(_))));
        assert!(matches!(apply(&["foo"]), Err(OptionError::Unsupported(_))));
        assert!(matches!(
            apply(&["--exclude"]),
            Err(OptionError::MissingValue(_))
        ));
        assert!(matches!(
            apply(&["--exclude=a[b"]),
            Err(OptionError::BadPattern { .. })
        ));
    }
}
