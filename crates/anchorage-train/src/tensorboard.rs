//! TensorBoard scalars written by anchorage itself: an `events.out.tfevents.*` file of TFRecord
//! frames holding `Event` protocol buffers. tensorboard-rs writes on a background thread that
//! panics on any I/O error (a full disk), and its callers then panic on a closed channel; here a
//! failed write is an error the trainer reports.
//!
//! Framing (TensorFlow's `record_writer.cc`): u64 length, masked CRC-32C of the length, data,
//! masked CRC-32C of the data, all little-endian. Messages (`event.proto`, `summary.proto`):
//! `Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }`,
//! `Summary { repeated Value value = 1; }`, `Value { string tag = 1; float simple_value = 2; }`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One events file.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates a new events file in `dir` (which must exist) and writes its version record.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
        let name = format!("events.out.tfevents.{:010}.{host}.{}.0", now.as_secs(), std::process::id());
        let path = dir.join(name);
        let mut writer = Self { file: BufWriter::new(File::create(&path)?), path };
        let mut event = event_header(now.as_secs_f64(), 0);
        field_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one scalar (buffered until [`flush`](Self::flush)).
    pub fn scalar(&mut self, tag: &str, value: f32, step: u64) -> std::io::Result<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut value_msg = Vec::new();
        field_bytes(&mut value_msg, 1, tag.as_bytes());
        value_msg.push(2 << 3 | 5); // field 2, fixed32
        value_msg.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        field_bytes(&mut summary, 1, &value_msg);
        let mut event = event_header(now.as_secs_f64(), step);
        field_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    /// Writes what is buffered and syncs nothing (TensorBoard files are not checkpoints).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.file.write_all(&len)?;
        self.file.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked_crc32c(data).to_le_bytes())
    }
}

fn event_header(wall_time: f64, step: u64) -> Vec<u8> {
    let mut event = vec![1 << 3 | 1]; // field 1, fixed64
    event.extend_from_slice(&wall_time.to_le_bytes());
    event.push(2 << 3); // field 2, varint
    varint(&mut event, step);
    event
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table built at compile time.
const CRC32C: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C of "123456789" (RFC 3720's check value).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        // /dev/full answers every write with ENOSPC.
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
        let mut w = EventWriter { file: BufWriter::new(file), path: "/dev/full".into() };
        let e = w.scalar("train/loss", 1.0, 1).and_then(|()| w.flush()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
    }
}
