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
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut head = Vec::new();
    (&file).take(4).read_to_end(&mut head).map_err(io_err(path))?;
    std::io::Seek::rewind(&mut file).map_err(io_err(path))?;
    if head == b"PK\x03\x04" {
        check_zip(path, file, file_len)
    } else {
        check_legacy(path, file, file_len)
    }
}

/// An error about the file's pickles.
fn pickle_error(path: &Path) -> impl Fn(String) -> TensorsError + '_ {
    move |message| TensorsError::Entry { path: path.to_path_buf(), key: "(pickle)".into(), message }
}

/// The zip format: `data.pkl`, and each storage it names as an entry `data/<key>`.
fn check_zip(path: &Path, file: std::fs::File, file_len: u64) -> Result<()> {
    let fail = pickle_error(path);
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| fail(format!("not a readable zip archive: {e}")))?;
    let pickle_name = archive.file_names().find(|n| n.ends_with("data.pkl")).map(str::to_string).ok_or_else(|| fail("no data.pkl in the archive".into()))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let mut pickle = Vec::new();
    {
        let entry = archive.by_name(&pickle_name).map_err(|e| fail(e.to_string()))?;
        // A pickle larger than the file (say, compressed 1000:1) is not a state dict.
        entry.take(file_len.saturating_mul(4)).read_to_end(&mut pickle).map_err(|e| fail(format!("data.pkl: {e}")))?;
    }
    let scan = scan_pickle(&pickle).map_err(&fail)?;
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
}

/// The legacy format: magic number, protocol, system info, the state dict and the storage keys,
/// then the raw storages.
fn check_legacy(path: &Path, file: std::fs::File, file_len: u64) -> Result<()> {
    let mut bytes = Vec::new();
    (&file).take(LEGACY_PICKLE_BYTES).read_to_end(&mut bytes).map_err(io_err(path))?;
    let mut rest = bytes.as_slice();
    let mut storages = Vec::new();
    let mut pickles = 0;
    for _ in 0..5 {
        if rest.first() != Some(&0x80) {
            break;
        }
        let scan = scan_pickle(rest).map_err(pickle_error(path))?;
        rest = &rest[scan.len..];
        storages.extend(scan.storages);
        pickles += 1;
    }
    if pickles == 5 {
        let data_start = (bytes.len() - rest.len()) as u64;
        check_legacy_storages(path, file, data_start, file_len, storages)?;
    }
    Ok(())
}

/// The legacy format's storages follow its pickles in sorted key order (torch `_legacy_save`),
/// each an i64 element count and the elements: each must hold at least the elements the pickle
/// declares, and lie inside the file.
fn check_legacy_storages(path: &Path, mut file: std::fs::File, mut at: u64, file_len: u64, mut storages: Vec<StorageRef>) -> Result<()> {
    storages.sort_by(|a, b| a.key.cmp(&b.key));
    storages.dedup_by(|a, b| a.key == b.key);
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
    let mut vm = Walk { p, at: 0, stack: Vec::new(), memo: HashMap::new(), storages: Vec::new() };
    loop {
        let op = *p.get(vm.at).ok_or("the pickle ends without STOP")?;
        vm.at += 1;
        if op == b'.' {
            return Ok(Scan { len: vm.at, storages: vm.storages });
        }
        if !vm.argument_op(op)? && !vm.stack_op(op)? {
            return Err(format!("unknown pickle opcode 0x{op:02x} at byte {}", vm.at - 1));
        }
    }
}

/// The walk's state: where it is, what the stack and memo hold, the storages met.
struct Walk<'a> {
    p: &'a [u8],
    at: usize,
    stack: Vec<Item>,
    memo: HashMap<u64, Item>,
    storages: Vec<StorageRef>,
}

/// A little-endian unsigned number.
fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x))
}

impl Walk<'_> {
    /// The next `n` bytes of opcode `op`'s argument, refused past the end.
    fn take(&mut self, op: u8, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.p.len()).ok_or_else(|| {
            format!("opcode 0x{op:02x} at byte {} asks for {n} bytes past the end", self.at - 1)
        })?;
        let arg = &self.p[self.at..end];
        self.at = end;
        Ok(arg)
    }

    fn top(&self) -> Item {
        self.stack.last().cloned().unwrap_or(Item::Other(0))
    }

    fn recall(&self, idx: u64) -> Item {
        self.memo.get(&idx).cloned().unwrap_or(Item::Other(0))
    }

    /// Opcodes with an argument in the bytes that follow (numbers, lengths and what they count,
    /// lines, memo indices). `false` for any other opcode.
    fn argument_op(&mut self, op: u8) -> std::result::Result<bool, String> {
        match op {
            0x80 => {
                self.take(op, 1)?;
            }
            0x95 => {
                self.take(op, 8)?;
            }
            b'K' | b'M' | b'J' => {
                let width = match op {
                    b'K' => 1,
                    b'M' => 2,
                    _ => 4,
                };
                let v = le(self.take(op, width)?);
                self.stack.push(Item::Int(v));
            }
            0x82..=0x84 | b'G' => {
                let width = match op {
                    0x82 => 1,
                    0x83 => 2,
                    0x84 => 4,
                    _ => 8,
                };
                self.take(op, width)?;
                self.stack.push(Item::Other(0));
            }
            b'h' | b'j' | b'q' | b'r' => {
                let idx = le(self.take(op, if op == b'h' || op == b'q' { 1 } else { 4 })?);
                if op == b'h' || op == b'j' {
                    let item = self.recall(idx);
                    self.stack.push(item);
                } else {
                    self.memo.insert(idx, self.top());
                }
            }
            0x94 => {
                self.memo.insert(self.memo.len() as u64, self.top());
            }
            b'X' | b'T' | b'B' | 0x8c | b'U' | b'C' | 0x8d | 0x8e | 0x96 | 0x8a | 0x8b => self.counted(op)?,
            b'I' | b'L' | b'S' | b'V' | b'F' | b'g' | b'p' | b'P' => self.line(op)?,
            b'c' | b'i' => {
                let module = read_line(self.p, &mut self.at, op)?;
                let name = read_line(self.p, &mut self.at, op)?;
                if op == b'i' {
                    let items = pop_mark(&mut self.stack)?;
                    self.stack.push(Item::Other(nested(&items)?));
                } else {
                    self.stack.push(Item::Global(format!("{module}.{name}")));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A length-prefixed argument: text, bytes or a long integer.
    fn counted(&mut self, op: u8) -> std::result::Result<(), String> {
        let width = match op {
            0x8c | b'U' | b'C' | 0x8a => 1,
            b'X' | b'T' | b'B' | 0x8b => 4,
            _ => 8,
        };
        let n = le(self.take(op, width)?);
        let n = usize::try_from(n).map_err(|_| format!("a length of {n} bytes"))?;
        let arg = self.take(op, n)?;
        let item = match op {
            b'X' | 0x8c | 0x8d => Item::Text(String::from_utf8_lossy(arg).into_owned()),
            0x8a if n <= 8 => Item::Int(le(arg)),
            _ => Item::Other(0),
        };
        self.stack.push(item);
        Ok(())
    }

    /// A protocol-0 argument on its own line.
    fn line(&mut self, op: u8) -> std::result::Result<(), String> {
        let line = read_line(self.p, &mut self.at, op)?;
        let index = || line.trim().parse::<u64>().unwrap_or(u64::MAX);
        match op {
            b'p' => {
                self.memo.insert(index(), self.top());
            }
            b'g' => {
                let item = self.recall(index());
                self.stack.push(item);
            }
            b'I' | b'L' => self.stack.push(line.trim().trim_end_matches('L').parse().map(Item::Int).unwrap_or(Item::Other(0))),
            _ => self.stack.push(Item::Other(0)),
        }
        Ok(())
    }

    /// Opcodes without an argument: atoms, containers, marks, calls. `false` for any other.
    fn stack_op(&mut self, op: u8) -> std::result::Result<bool, String> {
        let stack = &mut self.stack;
        match op {
            b'(' => stack.push(Item::Mark),
            b'N' | 0x88 | 0x89 | b'}' | b']' | b')' | 0x8f | 0x97 => stack.push(Item::Other(0)),
            0x98 => {}
            b't' => {
                let items = pop_mark(stack)?;
                stack.push(Item::Tuple(nested(&items)?, items));
            }
            b'l' | b'd' | 0x91 | b'o' => {
                let items = pop_mark(stack)?;
                stack.push(Item::Other(nested(&items)?));
            }
            0x85..=0x87 => {
                let items = pop_n(stack, usize::from(op - 0x84))?;
                stack.push(Item::Tuple(nested(&items)?, items));
            }
            b'1' => {
                pop_mark(stack)?;
            }
            b'0' => {
                stack.pop().ok_or("POP on an empty stack")?;
            }
            b'2' => {
                let top = stack.last().cloned().ok_or("DUP on an empty stack")?;
                stack.push(top);
            }
            b'e' | b'u' | 0x90 => {
                let items = pop_mark(stack)?;
                grow_top(stack, nested(&items)?)?;
            }
            b'a' | b's' | b'b' => {
                let items = pop_n(stack, if op == b's' { 2 } else { 1 })?;
                grow_top(stack, nested(&items)?)?;
            }
            b'R' | 0x81 | 0x93 | 0x92 => {
                let items = pop_n(stack, if op == 0x92 { 3 } else { 2 })?;
                stack.push(if op == 0x93 { Item::Other(0) } else { Item::Other(nested(&items)?) });
            }
            b'Q' => {
                let pid = stack.pop().ok_or("BINPERSID on an empty stack")?;
                if let Some(storage) = storage_ref(&pid) {
                    self.storages.push(storage);
                }
                self.stack.push(Item::Other(pid.depth() + 1));
            }
            _ => return Ok(false),
        }
        Ok(true)
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
