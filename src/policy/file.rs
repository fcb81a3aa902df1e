//! Reading policy files: the only module that touches `serde_yaml` (upstream no longer maintains
//! it, so it stays replaceable). It turns each `*.yaml` file into plain structs that remember
//! where every table and attribute was written, for error messages that name file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::PolicyError;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub subject: Option<RawSubject>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub tables: BTreeMap<String, RawTable>,
    /// Extra functions the agent may call, on top of the built-in allowlist.
    #[serde(default)]
    pub functions: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSubject {
    #[serde(default)]
    pub exists: Option<String>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub source: Option<String>,
    pub rows: Option<String>,
    pub columns: Option<Vec<String>>,
    pub description: Option<String>,
    pub view: Option<String>,
    pub column: Option<String>,
    #[serde(rename = "match")]
    pub match_attribute: Option<String>,
}

/// A map whose keys must be unique: serde_yaml would otherwise keep the last of two entries
/// with the same name, silently replacing one table's rule with another's.
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a mapping of names")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("duplicate entry `{key}`")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique(std::marker::PhantomData))
}

/// Where something was written: shown in every policy error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

pub struct LoadedFile {
    pub path: PathBuf,
    pub text: String,
    pub raw: RawFile,
}

impl LoadedFile {
    /// The line on which `key:` is written, indented, after the line of `section:`.
    /// serde_yaml's values carry no positions, so this is found in the text; a key that cannot
    /// be found (flow style, say) falls back to the section's line.
    pub fn origin_of(&self, section: &str, key: &str) -> Origin {
        let mut section_line = 1;
        let mut in_section = false;
        for (index, line) in self.text.lines().enumerate() {
            let trimmed = line.trim_start();
            let indented = trimmed.len() != line.len();
            if !indented && trimmed.starts_with(&format!("{section}:")) {
                in_section = true;
                section_line = index + 1;
            } else if !indented && !trimmed.is_empty() && !trimmed.starts_with('#') {
                in_section = false;
            } else if in_section && indented && yaml_key(trimmed) == Some(key) {
                return Origin {
                    file: self.path.clone(),
                    line: index + 1,
                };
            }
        }
        Origin {
            file: self.path.clone(),
            line: section_line,
        }
    }
}

/// serde_yaml places a duplicate-key error at the start of the mapping; point at the second
/// occurrence of the key instead.
fn duplicate_line(text: &str, message: &str) -> Option<usize> {
    let key = message
        .split("duplicate entry `")
        .nth(1)?
        .split('`')
        .next()?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.len() != line.trim_start().len() && yaml_key(line.trim_start()) == Some(key)
        })
        .nth(1)
        .map(|(index, _)| index + 1)
}

fn yaml_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(':')?;
    Some(key.trim().trim_matches('"').trim_matches('\''))
}

/// Every `*.yaml` / `*.yml` file of `dir`, in name order so that merges are deterministic.
pub fn read_dir(dir: &Path) -> Result<Vec<LoadedFile>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(PolicyError::NoFiles {
            dir: dir.to_path_buf(),
        });
    }
    paths.into_iter().map(|path| read_file(&path)).collect()
}

pub fn read_file(path: &Path) -> Result<LoadedFile, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = parse_text(&text).map_err(|(line, message)| PolicyError::Yaml {
        origin: Origin {
            file: path.to_path_buf(),
            line,
        },
        message,
    })?;
    Ok(LoadedFile {
        path: path.to_path_buf(),
        text,
        raw,
    })
}

/// Parses one file's text; an error comes with the line serde_yaml reports (1 if none).
pub fn parse_text(text: &str) -> Result<RawFile, (usize, String)> {
    if text.trim().is_empty() {
        return Ok(RawFile::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let message = e.to_string();
        let line = duplicate_line(text, &message)
            .or_else(|| e.location().map(|l| l.line()))
            .unwrap_or(1);
        (line, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let (line, message) =
            parse_text("tables:\n  invoices:\n    rows: \"true\"\n    colums: [id]\n").unwrap_err();
        assert_eq!(line, 4);
        assert!(message.contains("colums"), "{message}");
    }

    #[test]
    fn duplicate_keys_in_one_file_are_refused() {
        let (line, message) =
            parse_text("tables:\n  a:\n    rows: \"true\"\n  a:\n    rows: \"false\"\n")
                .unwrap_err();
        assert!(message.contains("duplicate"), "{message}");
        assert_eq!(line, 4);
    }

    #[test]
    fn origin_finds_the_key_line() {
        let file = LoadedFile {
            path: "p.yaml".into(),
            text: "subject:\n  exists: x\ntables:\n  # c\n  invoices:\n    rows: t\n".into(),
            raw: RawFile::default(),
        };
        assert_eq!(file.origin_of("tables", "invoices").line, 5);
    }
}
