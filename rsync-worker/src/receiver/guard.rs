//! The prune guard ([`verdict`]): whether the deletions a pull is about to make look like
//! a broken source (an unmounted disk, an empty CSI directory, a wiped volume) rather than
//! files deleted on purpose. Object pruning in the controller has the same two guards.
//!
//! The rule, on the target's non-directory entries ("files": regular files, symlinks and
//! the like; directories are not counted, their contents are):
//! - nothing to delete: allowed;
//! - the source listing is empty and the target holds entries the pull would delete:
//!   refused (whatever the counts);
//! - the pull would delete more than half of the files the target held before it
//!   (`doomed * 2 > existing`): refused, except that at most [`SMALL_DELETION`] files may
//!   always go while the source still lists at least one file (a tiny volume losing a file
//!   or two is normal; a volume left without any file is not).
//!
//! A refusal deletes nothing at all (the transfer still runs, so new and changed files
//! arrive) and is reported in `SyncSummary::prune_refused`. `--allow-mass-deletion`
//! (`SyncOptions::allow_mass_deletion`) skips the guard.

/// Files a pull may always delete, even more than half of the target's, while the source
/// still lists a file.
pub(super) const SMALL_DELETION: u64 = 2;

/// What the guard looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PruneCounts {
    /// Entries in the source listing (after excludes).
    pub(super) listed: u64,
    /// Non-directory entries in the source listing.
    pub(super) listed_files: u64,
    /// Files at the target before the pull that the sync manages: the listed ones that
    /// were present plus the ones about to be deleted.
    pub(super) existing_files: u64,
    /// Top-level entries the pull would delete (a directory counts once here).
    pub(super) doomed_entries: u64,
    /// Files the pull would delete, including those inside deleted directories.
    pub(super) doomed_files: u64,
}

/// `None`: the deletions may run. `Some(why)`: refused, with the counts and the way out.
pub(super) fn verdict(c: &PruneCounts) -> Option<String> {
    if c.doomed_entries == 0 {
        return None;
    }
    if c.listed == 0 {
        return Some(format!(
            "the source listing is empty but the target holds {} entries ({} files) that would be \
             deleted: nothing was deleted",
            c.doomed_entries, c.doomed_files
        ));
    }
    let small = c.doomed_files <= SMALL_DELETION && c.listed_files > 0;
    if c.doomed_files.saturating_mul(2) > c.existing_files && !small {
        return Some(format!(
            "the pull would delete {} of the target's {} files (more than half; the source lists \
             {} files): nothing was deleted",
            c.doomed_files, c.existing_files, c.listed_files
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(
        listed: u64,
        listed_files: u64,
        existing: u64,
        entries: u64,
        files: u64,
    ) -> PruneCounts {
        PruneCounts {
            listed,
            listed_files,
            existing_files: existing,
            doomed_entries: entries,
            doomed_files: files,
        }
    }

    #[test]
    fn the_rule_table() {
        // (listed, listed files, existing files, doomed entries, doomed files) -> refused
        type Row = ((u64, u64, u64, u64, u64), bool, &'static str);
        let table: &[Row] = &[
            ((0, 0, 0, 0, 0), false, "empty into empty"),
            ((10, 10, 10, 0, 0), false, "nothing to delete"),
            ((0, 0, 5, 5, 5), true, "empty listing, populated target"),
            ((0, 0, 1, 1, 1), true, "empty listing, a single file"),
            (
                (0, 0, 0, 1, 0),
                true,
                "empty listing, only an empty directory",
            ),
            ((3, 1, 4, 3, 3), true, "4 -> 1 files: 3 of 4 gone"),
            ((40, 40, 100, 60, 60), true, "100 -> 40 files"),
            ((50, 50, 100, 50, 50), false, "exactly half is allowed"),
            ((51, 51, 100, 49, 49), false, "less than half"),
            ((10, 9, 10, 1, 1), false, "one file of ten"),
            ((1, 1, 2, 1, 1), false, "2 -> 1 files: half"),
            ((1, 1, 3, 2, 2), false, "3 -> 1 files: small deletion"),
            ((2, 1, 4, 3, 3), true, "4 -> 1 files: above the small floor"),
            ((2, 0, 2, 2, 2), true, "only directories left at the source"),
            ((1, 0, 1, 1, 1), true, "1 -> 0 files, a directory left"),
            ((5, 5, 5, 1, 0), false, "an empty directory goes"),
            (
                (1, 1, 1001, 1, 1000),
                true,
                "a directory holding almost everything",
            ),
        ];
        for ((listed, lf, existing, entries, files), refused, what) in table {
            let c = counts(*listed, *lf, *existing, *entries, *files);
            assert_eq!(verdict(&c).is_some(), *refused, "{what}: {c:?}");
        }
    }

    #[test]
    fn a_refusal_names_the_counts() {
        let why = verdict(&counts(40, 40, 100, 60, 60)).unwrap();
        assert!(why.contains("60 of the target's 100 files"), "{why}");
        let why = verdict(&counts(0, 0, 7, 3, 7)).unwrap();
        assert!(
            why.contains("listing is empty") && why.contains("3 entries (7 files)"),
            "{why}"
        );
    }
}
