//! [`Checkpoint`]: the tensors of one file or of several shards, by key, whatever their format:
//! safetensors (preferred) or PyTorch pickles. A model folder is opened through the first of
//! `model.safetensors.index.json`, `model.safetensors`, `pytorch_model.bin.index.json`,
//! `pytorch_model.bin` (the order transformers' `from_pretrained` tries them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;

use crate::dtype::Dtype;
use crate::error::{Result, TensorsError};
use crate::header::Metadata;
use crate::index::ShardIndex;
use crate::pytorch::PytorchFile;
use crate::safetensors_file::SafetensorsFile;

/// Weight files of a model folder, in the order they are tried: (index, single file).
const LAYOUTS: [(&str, &str); 2] = [
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
];

/// Extensions of PyTorch pickles (read as such when they are not safetensors).
const PYTORCH_EXTENSIONS: [&str; 4] = ["bin", "pt", "pth", "ckpt"];

/// One file of a checkpoint.
#[derive(Debug)]
pub enum Source {
    Safetensors(SafetensorsFile),
    Pytorch(PytorchFile),
}

impl Source {
    /// Opens `path` as safetensors or, when that fails and its extension is a PyTorch one, as a
    /// PyTorch pickle (LLaVA's `mm_projector.bin`, a `.pt` of tensors).
    pub fn open(path: &Path) -> Result<Self> {
        match SafetensorsFile::open(path) {
            Ok(file) => Ok(Source::Safetensors(file)),
            Err(err @ TensorsError::Io { .. }) => Err(err),
            Err(err) => {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if PYTORCH_EXTENSIONS.contains(&ext) {
                    Ok(Source::Pytorch(PytorchFile::open(path)?))
                } else {
                    Err(err)
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Source::Safetensors(f) => f.path(),
            Source::Pytorch(f) => f.path(),
        }
    }

    /// Key, dtype and shape of every tensor.
    fn entries(&self) -> Vec<(&String, Dtype, &Vec<usize>)> {
        match self {
            Source::Safetensors(f) => f
                .tensors()
                .iter()
                .map(|(k, t)| (k, t.dtype, &t.shape))
                .collect(),
            Source::Pytorch(f) => f
                .tensors()
                .iter()
                .map(|(k, t)| (k, t.dtype, &t.shape))
                .collect(),
        }
    }

    fn data(&self, key: &str) -> Result<TensorData> {
        match self {
            Source::Safetensors(f) => f.data(key),
            Source::Pytorch(f) => f.data(key),
        }
    }
}

/// Where a key lives and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index into the checkpoint's files.
    pub file: usize,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// The tensors of one or more files, each key in exactly one of them.
#[derive(Debug)]
pub struct Checkpoint {
    files: Vec<Source>,
    tensors: BTreeMap<String, Entry>,
    index: Option<PathBuf>,
}

impl Checkpoint {
    /// Opens the weights of a model folder (see the module docs for the order tried).
    pub fn open_dir(dir: &Path) -> Result<Self> {
        for (index, single) in LAYOUTS {
            let (index, single) = (dir.join(index), dir.join(single));
            if index.is_file() {
                return Self::open_index(&index);
            }
            if single.is_file() {
                return Self::open_files(&[single]);
            }
        }
        Err(TensorsError::NoWeights {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens the shards a `*.index.json` lists (paths relative to its folder), and checks that
    /// each key it lists is in the shard it names.
    pub fn open_index(index_path: &Path) -> Result<Self> {
        let index = ShardIndex::read(index_path)?;
        let mut checkpoint = Self::open_files(&index.files())?;
        index.check(|key| checkpoint.get(key).map(|e| checkpoint.path_of(e)))?;
        checkpoint.index = Some(index_path.to_path_buf());
        Ok(checkpoint)
    }

    /// Opens `paths` (each as [`Source::open`] does); a key in two of them is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut checkpoint = Self {
            files: Vec::with_capacity(paths.len()),
            tensors: BTreeMap::new(),
            index: None,
        };
        for path in paths {
            checkpoint.add(Source::open(path)?)?;
        }
        Ok(checkpoint)
    }

    fn add(&mut self, source: Source) -> Result<()> {
        let file = self.files.len();
        for (key, dtype, shape) in source.entries() {
            let entry = Entry {
                file,
                dtype,
                shape: shape.clone(),
            };
            if let Some(first) = self.tensors.insert(key.clone(), entry) {
                return Err(TensorsError::Duplicate {
                    key: key.clone(),
                    first: self.files[first.file].path().to_path_buf(),
                    second: source.path().to_path_buf(),
                });
            }
        }
        self.files.push(source);
        Ok(())
    }

    /// Every key's entry.
    pub fn tensors(&self) -> &BTreeMap<String, Entry> {
        &self.tensors
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.tensors.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The files, in the order opened.
    pub fn files(&self) -> &[Source] {
        &self.files
    }

    /// The shard index this checkpoint was opened through, if any.
    pub fn index(&self) -> Option<&Path> {
        self.index.as_deref()
    }

    /// The file that holds `entry`.
    pub fn path_of(&self, entry: &Entry) -> &Path {
        self.files[entry.file].path()
    }

    /// The path that stands for the whole checkpoint in messages: its index, else its one file.
    pub fn label(&self) -> Option<&Path> {
        self.index()
            .or_else(|| self.files.first().map(Source::path))
    }

    /// A copy of `key` in its stored dtype.
    pub fn data(&self, key: &str) -> Result<TensorData> {
        let entry = self.tensors.get(key).ok_or_else(|| TensorsError::Missing {
            path: self.label().map(Path::to_path_buf).unwrap_or_default(),
            key: key.to_string(),
        })?;
        self.files[entry.file].data(key)
    }

    /// Every tensor, copied, in its stored dtype.
    pub fn read_all(&self) -> Result<BTreeMap<String, TensorData>> {
        self.tensors
            .keys()
            .map(|key| Ok((key.clone(), self.data(key)?)))
            .collect()
    }

    /// The safetensors files' `__metadata__` maps merged (the first file's value wins); PyTorch
    /// files carry none.
    pub fn metadata(&self) -> Metadata {
        let mut out = Metadata::new();
        for file in &self.files {
            if let Source::Safetensors(f) = file {
                for (k, v) in f.metadata() {
                    out.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        out
    }
}
