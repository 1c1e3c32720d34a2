use std::path::Path;

use toml::{Table, Value};

use super::{apply_override, validate::validate, Recipe};
use crate::TrainError;

/// Reads a recipe file, applies `--set` overrides, and checks it: unknown keys, wrong types, bad
/// enum values, out-of-range numbers and missing files are errors naming the key or file.
///
/// Relative paths in a recipe are taken relative to the working directory (run from the
/// repository root, as the README does).
pub fn load_recipe(path: &Path, overrides: &[String]) -> Result<Recipe, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::ReadRecipe {
        path: path.to_path_buf(),
        source,
    })?;
    parse_recipe(&text, path, overrides)
}

/// As [`load_recipe`], from text; `origin` names the recipe in errors.
pub fn parse_recipe(text: &str, origin: &Path, overrides: &[String]) -> Result<Recipe, TrainError> {
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| TrainError::Syntax {
        path: origin.to_path_buf(),
        message: e.to_string(),
    })?;
    for item in overrides {
        apply_override(&mut table, item)?;
    }
    let recipe: Recipe =
        serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| TrainError::Key {
            path: origin.to_path_buf(),
            key: e.path().to_string(),
            message: e.into_inner().to_string().trim().to_string(),
        })?;
    validate(&recipe, origin)?;
    Ok(recipe)
}
