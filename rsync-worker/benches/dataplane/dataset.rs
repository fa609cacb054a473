//! The bench's data: a deterministic tree of files (same seed, same bytes on every machine),
//! and the edits the "1% changed" and "scattered edits" cases make to it.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{MIB, Result, SEED, run_ok};

pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(super) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

pub(super) fn write_random(path: &Path, size: u64, rng: &mut Rng) -> Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    w.flush()?;
    Ok(())
}

/// 20,000 small files, 120 files of 1-8 MiB, one 384 MiB file, a symlink (about 1 GiB).
pub(super) fn generate_base(dir: &Path) -> Result<()> {
    let mut rng = Rng(SEED);
    for d in 0..100 {
        let sub = dir.join(format!("small/d{d:03}"));
        fs::create_dir_all(&sub)?;
        for f in 0..200 {
            write_random(
                &sub.join(format!("f{f:03}.dat")),
                rng.below(16 * 1024),
                &mut rng,
            )?;
        }
    }
    fs::create_dir_all(dir.join("medium"))?;
    for m in 0..120 {
        write_random(
            &dir.join(format!("medium/m{m:03}.bin")),
            MIB + rng.below(7 * MIB),
            &mut rng,
        )?;
    }
    write_random(&dir.join("large.bin"), 384 * MIB, &mut rng)?;
    symlink("medium/m000.bin", dir.join("link-to-m000"))?;
    Ok(())
}

pub(super) fn ensure_dataset(data: &Path) -> Result<(PathBuf, PathBuf)> {
    let base = data.join("base");
    let big = data.join("big");
    if !data.join("base.complete").exists() {
        println!("generating the data set under {} (once)...", base.display());
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base)?;
        generate_base(&base)?;
        fs::write(data.join("base.complete"), "")?;
    }
    if !data.join("big.complete").exists() {
        println!(
            "generating the 2 GiB file under {} (once)...",
            big.display()
        );
        let _ = fs::remove_dir_all(&big);
        fs::create_dir_all(&big)?;
        write_random(&big.join("big.bin"), 2048 * MIB, &mut Rng(SEED ^ 0xb16))?;
        fs::write(data.join("big.complete"), "")?;
    }
    Ok((base, big))
}

/// Every regular file under `root`, sorted, with its size.
pub(super) fn regular_files(root: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push((e.path(), e.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Overwrites `edit` bytes of `path` at scattered offsets, through a new file renamed
/// into place (so that a hard-linked copy of the cached data set stays untouched).
pub(super) fn scatter_edit(path: &Path, edit: u64, piece: u64, rng: &mut Rng) -> Result<()> {
    let mut data = fs::read(path)?;
    let len = data.len() as u64;
    if len == 0 {
        return Ok(());
    }
    let mut left = edit.min(len);
    while left > 0 {
        let n = left.min(piece).min(len);
        let at = rng.below(len - n + 1) as usize;
        rng.fill(&mut data[at..at + n as usize]);
        left -= n;
    }
    let tmp = path.with_extension("bench-tmp");
    fs::write(&tmp, &data)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// 1% of the bytes changed across 5% of the files, plus a few adds and deletes.
pub(super) fn mutate_one_percent(src: &Path) -> Result<u64> {
    let mut rng = Rng(SEED ^ 0x1);
    let files = regular_files(src)?;
    let total: u64 = files.iter().map(|f| f.1).sum();
    let chosen: Vec<&(PathBuf, u64)> = files.iter().filter(|_| rng.below(20) == 0).collect();
    let chosen_bytes: u64 = chosen.iter().map(|f| f.1).sum::<u64>().max(1);
    let budget = total / 100;
    let mut edited = 0;
    for (path, size) in &chosen {
        let share = (budget as u128 * *size as u128 / chosen_bytes as u128) as u64;
        scatter_edit(path, share.max(1), 4096, &mut rng)?;
        edited += share.max(1);
    }
    for i in 0..10 {
        let victim = &files[rng.below(files.len() as u64) as usize].0;
        let _ = fs::remove_file(victim);
        write_random(
            &src.join(format!("small/d{:03}/new{i}.dat", i * 7)),
            4096 + rng.below(8192),
            &mut rng,
        )?;
    }
    write_random(&src.join("medium/new-2mib.bin"), 2 * MIB, &mut rng)?;
    Ok(edited)
}

/// Moves `dir` (if it exists) under `trash` with a fresh name, for deletion later.
pub(super) fn set_aside(dir: &Path, trash: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    fs::create_dir_all(trash)?;
    for n in 0.. {
        let to = trash.join(format!("{n}"));
        if !to.exists() {
            fs::rename(dir, &to)?;
            return Ok(());
        }
    }
    Ok(())
}

pub(super) fn copy_tree_linked(from: &Path, to: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(to);
    run_ok(Command::new("cp").arg("-al").arg(from).arg(to))
}

pub(super) fn copy_file(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to.parent().ok_or("no parent")?)?;
    run_ok(
        Command::new("cp")
            .arg("-p")
            .arg("--reflink=auto")
            .arg(from)
            .arg(to),
    )
}
