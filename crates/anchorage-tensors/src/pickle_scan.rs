//! A check of a PyTorch file's pickles before burn-store parses them. burn-store's reader trusts
//! the pickle: an object nested thousands deep overflows its stack (an abort, not an error), and a
//! storage shorter than the pickle declares is read as zeros. This walks the opcodes once, without
//! building any object, and refuses:
//! - an argument that runs past the end of the pickle (a crafted length);
//! - objects nested deeper than [`MAX_DEPTH`];
//! - a storage (`('storage', torch.XStorage, key, location, numel)`) whose data entry in the zip
//!   archive holds fewer bytes than `numel` elements.
//!
//! Opcodes are those of pickle protocols 0–5 (CPython `Lib/pickletools.py`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::{io_err, Result, TensorsError};

/// Deeper than any state dict (a dict of tensors is 3–4 levels) by far, and shallow enough for
/// burn-store's recursive conversion on a 2 MiB thread stack.
pub const MAX_DEPTH: usize = 200;

/// The legacy format's pickles come first; this much of the file is read to check them.
const LEGACY_PICKLE_BYTES: u64 = 256 << 20;

/// Checks the pickles of a PyTorch file: a zip archive (`torch.save` since 1.6) or the legacy
/// format (a sequence of pickles followed by raw storages).
pub fn check_pytorch_file(path: &Path) -> Result<()> {
    let fail = |message: String| TensorsError::Entry {
        path: path.to_path_buf(),
        key: "(pickle)".into(),
        message,
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut head = Vec::new();
    (&file)
        .take(4)
        .read_to_end(&mut head)
        .map_err(io_err(path))?;
    if head == b"PK\x03\x04" {
        let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io_err(path))?);
        let mut archive = zip::ZipArchive::new(reader)
            .map_err(|e| fail(format!("not a readable zip archive: {e}")))?;
        let pickle_name = archive
            .file_names()
            .find(|n| n.ends_with("data.pkl"))
            .map(str::to_string)
            .ok_or_else(|| fail("no data.pkl in the archive".into()))?;
        let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
        let mut pickle = Vec::new();
        {
            let entry = archive
                .by_name(&pickle_name)
                .map_err(|e| fail(e.to_string()))?;
            // A pickle larger than the file (say, compressed 1000:1) is not a state dict.
            entry
                .take(file_len.saturating_mul(4))
                .read_to_end(&mut pickle)
                .map_err(|e| fail(format!("data.pkl: {e}")))?;
        }
        let scan = scan_pickle(&pickle).map_err(fail)?;
        for storage in scan.storages {
            let name = format!("{prefix}data/{}", storage.key);
            let have = archive.by_name(&name).map(|e| e.size()).unwrap_or(0);
            let need = storage.numel.saturating_mul(storage.element_size);
            if have < need {
                return Err(TensorsError::Entry {
                    path: path.to_path_buf(),
                    key: name,
                    message: format!("storage holds {have} bytes but the pickle declares {} elements of {} bytes: truncated or crafted file", storage.numel, storage.element_size),
                });
            }
        }
        Ok(())
    } else {
        // Legacy: magic number, protocol, system info, the state dict, the storage keys.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(io_err(path))?
            .take(LEGACY_PICKLE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(io_err(path))?;
        let mut rest = bytes.as_slice();
        let mut storages = Vec::new();
        let mut pickles = 0;
        for _ in 0..5 {
            if rest.first() != Some(&0x80) {
                break;
            }
            let scan = scan_pickle(rest).map_err(fail)?;
            rest = &rest[scan.len..];
            storages.extend(scan.storages);
            pickles += 1;
        }
        if pickles == 5 {
            let data_start = (bytes.len() - rest.len()) as u64;
            check_legacy_storages(path, data_start, file_len, storages)?;
        }
        Ok(())
    }
}

/// The legacy format's storages follow its pickles in sorted key order (torch `_legacy_save`),
/// each an i64 element count and the elements: each must hold at least the elements the pickle
/// declares, and lie inside the file.
fn check_legacy_storages(path: &Path, mut at: u64, file_len: u64, mut storages: Vec<StorageRef>) -> Result<()> {
    storages.sort_by(|a, b| a.key.cmp(&b.key));
    storages.dedup_by(|a, b| a.key == b.key);
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    for storage in storages {
        let fail = |message: String| TensorsError::Entry { path: path.to_path_buf(), key: format!("storage {}", storage.key), message };
        let mut count = [0u8; 8];
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(at)).map_err(io_err(path))?;
        file.read_exact(&mut count).map_err(|_| fail(format!("the file ends at byte {file_len} before this storage: truncated")))?;
        let count = u64::from_le_bytes(count);
        let bytes = count.saturating_mul(storage.element_size);
        if count < storage.numel {
            return Err(fail(format!("holds {count} elements but the pickle declares {}: truncated or crafted file", storage.numel)));
        }
        at = at.saturating_add(8).saturating_add(bytes);
        if at > file_len {
            return Err(fail(format!("{count} elements of {} bytes run past the end of the file ({file_len} bytes): truncated", storage.element_size)));
        }
    }
    Ok(())
}

/// A storage the pickle refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub numel: u64,
    pub element_size: u64,
}

/// What one pickle holds: its length up to and including STOP, and its storages.
#[derive(Debug, Default)]
pub struct Scan {
    pub len: usize,
    pub storages: Vec<StorageRef>,
}

/// The little that is tracked of each stack item: how deep it nests, and the values a storage
/// reference is made of.
#[derive(Debug, Clone)]
enum Item {
    Mark,
    Other(usize),
    Text(String),
    Int(u64),
    Global(String),
    Tuple(usize, Vec<Item>),
}

impl Item {
    fn depth(&self) -> usize {
        match self {
            Item::Other(d) | Item::Tuple(d, _) => *d,
            _ => 0,
        }
    }
}

/// Walks one pickle's opcodes up to STOP.
pub fn scan_pickle(p: &[u8]) -> std::result::Result<Scan, String> {
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u64, Item> = HashMap::new();
    let mut scan = Scan::default();
    let mut at = 0usize;
    loop {
        let op = *p.get(at).ok_or("the pickle ends without STOP")?;
        at += 1;
        let mut take = |n: usize| -> std::result::Result<&[u8], String> {
            let end = at.checked_add(n).filter(|&e| e <= p.len()).ok_or_else(|| {
                format!(
                    "opcode 0x{op:02x} at byte {} asks for {n} bytes past the end",
                    at - 1
                )
            })?;
            let arg = &p[at..end];
            at = end;
            Ok(arg)
        };
        let le = |b: &[u8]| b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x));
        match op {
            b'.' => {
                scan.len = at;
                return Ok(scan);
            }
            b'(' => stack.push(Item::Mark),
            0x80 | b'K' | 0x82 => {
                let v = le(take(1)?);
                if op == b'K' {
                    stack.push(Item::Int(v));
                }
                if op == 0x82 {
                    stack.push(Item::Other(0));
                }
            }
            b'M' | 0x83 => {
                let v = le(take(2)?);
                stack.push(if op == b'M' {
                    Item::Int(v)
                } else {
                    Item::Other(0)
                });
            }
            b'J' | 0x84 => {
                let v = le(take(4)?);
                stack.push(if op == b'J' {
                    Item::Int(v)
                } else {
                    Item::Other(0)
                });
            }
            b'G' => {
                take(8)?;
                stack.push(Item::Other(0));
            }
            0x95 => {
                take(8)?;
            }
            b'h' | b'j' => {
                let n = if op == b'h' { 1 } else { 4 };
                let idx = le(take(n)?);
                stack.push(memo.get(&idx).cloned().unwrap_or(Item::Other(0)));
            }
            b'q' | b'r' => {
                let n = if op == b'q' { 1 } else { 4 };
                let idx = le(take(n)?);
                memo.insert(idx, stack.last().cloned().unwrap_or(Item::Other(0)));
            }
            0x94 => {
                let idx = memo.len() as u64;
                memo.insert(idx, stack.last().cloned().unwrap_or(Item::Other(0)));
            }
            b'X' | b'T' | b'B' | 0x8c | b'U' | b'C' | 0x8d | 0x8e | 0x96 | 0x8a | 0x8b => {
                let width = match op {
                    0x8c | b'U' | b'C' | 0x8a => 1,
                    b'X' | b'T' | b'B' | 0x8b => 4,
                    _ => 8,
                };
                let n = le(take(width)?);
                let n = usize::try_from(n).map_err(|_| format!("a length of {n} bytes"))?;
                let arg = take(n)?;
                stack.push(match op {
                    b'X' | 0x8c | 0x8d => Item::Text(String::from_utf8_lossy(arg).into_owned()),
                    0x8a if n <= 8 => Item::Int(le(arg)),
                    _ => Item::Other(0),
                });
            }
            b'I' | b'L' | b'S' | b'V' | b'F' | b'g' | b'p' | b'P' => {
                let line = read_line(p, &mut at, op)?;
                match op {
                    b'p' => {
                        let idx = line.trim().parse().unwrap_or(u64::MAX);
                        memo.insert(idx, stack.last().cloned().unwrap_or(Item::Other(0)));
                    }
                    b'g' => {
                        let idx: u64 = line.trim().parse().unwrap_or(u64::MAX);
                        stack.push(memo.get(&idx).cloned().unwrap_or(Item::Other(0)));
                    }
                    b'P' => stack.push(Item::Other(0)),
                    b'I' | b'L' => stack.push(
                        line.trim()
                            .trim_end_matches('L')
                            .parse()
                            .map(Item::Int)
                            .unwrap_or(Item::Other(0)),
                    ),
                    _ => stack.push(Item::Other(0)),
                }
            }
            b'c' | b'i' => {
                let module = read_line(p, &mut at, op)?;
                let name = read_line(p, &mut at, op)?;
                if op == b'i' {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Item::Other(nested(&items)?));
                } else {
                    stack.push(Item::Global(format!("{module}.{name}")));
                }
            }
            b'N' | 0x88 | 0x89 | b'}' | b']' | b')' | 0x8f | 0x97 => stack.push(Item::Other(0)),
            0x98 => {}
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::Tuple(nested(&items)?, items));
            }
            b'l' | b'd' | 0x91 | b'o' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::Other(nested(&items)?));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let items = pop_n(&mut stack, n)?;
                stack.push(Item::Tuple(nested(&items)?, items));
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'0' => {
                stack.pop().ok_or("POP on an empty stack")?;
            }
            b'2' => {
                let top = stack.last().cloned().ok_or("DUP on an empty stack")?;
                stack.push(top);
            }
            b'e' | b'u' | 0x90 => {
                let items = pop_mark(&mut stack)?;
                grow_top(&mut stack, nested(&items)?)?;
            }
            b'a' | b's' | b'b' => {
                let items = pop_n(&mut stack, if op == b's' { 2 } else { 1 })?;
                grow_top(&mut stack, nested(&items)?)?;
            }
            b'R' | 0x81 | 0x93 | 0x92 => {
                let n = match op {
                    0x92 => 3,
                    _ => 2,
                };
                let items = pop_n(&mut stack, n)?;
                stack.push(if op == 0x93 {
                    Item::Other(0)
                } else {
                    Item::Other(nested(&items)?)
                });
            }
            b'Q' => {
                let pid = stack.pop().ok_or("BINPERSID on an empty stack")?;
                if let Some(storage) = storage_ref(&pid) {
                    scan.storages.push(storage);
                }
                stack.push(Item::Other(pid.depth() + 1));
            }
            other => {
                return Err(format!(
                    "unknown pickle opcode 0x{other:02x} at byte {}",
                    at - 1
                ))
            }
        }
    }
}

/// One nesting level above the deepest of `items`, refused past [`MAX_DEPTH`].
fn nested(items: &[Item]) -> std::result::Result<usize, String> {
    let depth = items.iter().map(Item::depth).max().unwrap_or(0) + 1;
    if depth > MAX_DEPTH {
        return Err(format!(
            "objects nested more than {MAX_DEPTH} deep: not a state dict"
        ));
    }
    Ok(depth)
}

/// The container under the items an APPEND/SETITEM/BUILD added is now at least `depth` deep.
fn grow_top(stack: &mut [Item], depth: usize) -> std::result::Result<(), String> {
    let top = stack.last_mut().ok_or("an append to an empty stack")?;
    let d = top.depth().max(depth);
    *top = Item::Other(d);
    Ok(())
}

fn pop_mark(stack: &mut Vec<Item>) -> std::result::Result<Vec<Item>, String> {
    let mark = stack
        .iter()
        .rposition(|i| matches!(i, Item::Mark))
        .ok_or("no MARK on the stack")?;
    let items = stack.split_off(mark + 1);
    stack.pop();
    Ok(items)
}

fn pop_n(stack: &mut Vec<Item>, n: usize) -> std::result::Result<Vec<Item>, String> {
    let at = stack
        .len()
        .checked_sub(n)
        .ok_or("the stack holds too few items")?;
    Ok(stack.split_off(at))
}

fn read_line(p: &[u8], at: &mut usize, op: u8) -> std::result::Result<String, String> {
    let rest = &p[*at..];
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| format!("opcode 0x{op:02x}: no end of line"))?;
    *at += end + 1;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// `('storage', torch.XStorage, key, location, numel[, view_metadata])`, torch's persistent id of
/// a storage (zip and legacy format).
fn storage_ref(pid: &Item) -> Option<StorageRef> {
    let Item::Tuple(_, items) = pid else {
        return None;
    };
    match items.as_slice() {
        // The zip format's 5-tuple, and the legacy format's 6-tuple with view metadata last.
        [Item::Text(tag), Item::Global(class), Item::Text(key), _, Item::Int(numel)]
        | [Item::Text(tag), Item::Global(class), Item::Text(key), _, Item::Int(numel), _]
            if tag == "storage" =>
        {
            Some(StorageRef {
                key: key.clone(),
                numel: *numel,
                element_size: element_size(class)?,
            })
        }
        _ => None,
    }
}

/// Bytes per element of torch's storage classes (`torch.FloatStorage`, ...).
fn element_size(class: &str) -> Option<u64> {
    let name = class.strip_prefix("torch.")?;
    Some(match name {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "ByteStorage" | "CharStorage" | "BoolStorage" | "UntypedStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}
