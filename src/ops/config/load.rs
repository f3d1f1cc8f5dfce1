//! Reading a configuration: TOML text or a file, then `--config section.key=value` overrides
//! applied in order; every key and its type is checked on its own (so an error names the
//! key) before the whole is deserialized and validated. [`NodeConfig::load_layers`] puts
//! nano-node's files of the data directory underneath.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::types::Network;

use super::error::ConfigError;
use super::keys::{KEYS, SECTIONS};
use super::nano::{NanoMapper, NanoReport};
use super::schema::{
    IoSection, LimitsSection, NodeConfig, NodeSection, RepCrawlerSection, RpcSection,
    ServerSection, TimingSection, VerifySection,
};

impl NodeConfig {
    /// Parses TOML text (checking keys and types), without overrides.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, ConfigError> {
        let table = parse_table(text, "text")?;
        from_table(table)
    }

    /// Loads `file` (if any), then applies `overrides` (`section.key=value`, in order), checks
    /// keys, types and ranges.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<NodeConfig, ConfigError> {
        let mut table = match file {
            Some(path) => read_table(path)?,
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        from_table(table)
    }
}

/// The configuration layers above the defaults, for [`NodeConfig::load_layers`]: the
/// data-directory files are read from the data path these give.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layers<'a> {
    /// `--config FILE`.
    pub file: Option<&'a Path>,
    /// `--config key=value`, in order (nanopeer's keys or nano-node's).
    pub overrides: &'a [String],
    /// The network flag (it picks the default data path).
    pub network: Option<Network>,
    /// The data path flag.
    pub data_path: Option<&'a Path>,
}

/// A loaded configuration and what nano-node's configuration contributed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The configuration, before the flags other than network and data path.
    pub config: NodeConfig,
    /// The nano-node files read and the nano-node keys ignored.
    pub nano: NanoReport,
}

impl NodeConfig {
    /// Loads the layers, lowest first: nano-node's `config-rpc.toml` and `config-node.toml` in
    /// the data directory (see [`nano`](super::nano)), `--config FILE`, then each override in
    /// order (nanopeer's keys, or nano-node's: mapped, or recorded as ignored). The data
    /// directory is the data path flag, else `node.data_path` of the file and overrides, else
    /// the default for the network (flag, else file and overrides). Checks keys, types and
    /// ranges; the caller applies its flags on top.
    pub fn load_layers(layers: &Layers<'_>) -> Result<Loaded, ConfigError> {
        let file_table = match layers.file {
            Some(path) => read_table(path)?,
            None => toml::Table::new(),
        };
        let mut upper = file_table.clone();
        for o in layers.overrides {
            if o.split_once('=').is_some_and(|(k, _)| is_own_key(k.trim())) {
                apply_override(&mut upper, o)?;
            }
        }
        let (network, data_path) = network_and_data_path(&upper)?;
        let network = layers.network.unwrap_or(network);
        let data_dir = match (layers.data_path, data_path) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(p)) => p,
            (None, None) => NodeConfig::for_network(network).data_path(),
        };
        let (mut mapper, mut table) = NanoMapper::read_data_dir(&data_dir, network)?;
        merge(&mut table, file_table);
        for o in layers.overrides {
            let (key, value) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::OverrideForm(o.clone()))?;
            let key = key.trim();
            if is_own_key(key) || !mapper.apply_override(&mut table, key, value.trim())? {
                apply_override(&mut table, o)?;
            }
        }
        Ok(Loaded {
            config: from_table(table).map_err(|e| mapper.explain(e))?,
            nano: mapper.report,
        })
    }
}

/// Reads and parses a TOML file.
fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_table(&text, &path.display().to_string())
}

/// Whether `key` is one of nanopeer's `section.key`.
fn is_own_key(key: &str) -> bool {
    key.split_once('.')
        .is_some_and(|(s, k)| KEYS.iter().any(|kd| kd.section == s && kd.key == k))
}

/// `node.network` and `node.data_path` of a table (checked), before the rest is.
fn network_and_data_path(table: &toml::Table) -> Result<(Network, Option<PathBuf>), ConfigError> {
    let mut node = toml::Table::new();
    if let Some(sec) = table.get("node").and_then(|s| s.as_table()) {
        for key in ["network", "data_path"] {
            if let Some(v) = sec.get(key) {
                check_key("node", key, v).map_err(|message| ConfigError::BadValue {
                    key: format!("node.{key}"),
                    message,
                })?;
                node.insert(key.to_string(), v.clone());
            }
        }
    }
    let s = NodeSection::deserialize(node).map_err(|e| ConfigError::BadValue {
        key: "node".into(),
        message: e.to_string(),
    })?;
    Ok((s.network, s.data_path))
}

/// `upper` over `lower`, key by key within each section.
fn merge(lower: &mut toml::Table, upper: toml::Table) {
    for (section, value) in upper {
        match (lower.get_mut(&section), value) {
            (Some(toml::Value::Table(l)), toml::Value::Table(u)) => l.extend(u),
            (_, value) => {
                lower.insert(section, value);
            }
        }
    }
}

fn parse_table(text: &str, source_name: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            source_name: source_name.to_string(),
            message: e.message().to_string(),
        })
}

/// Parses a `section.key=value` override into the table. The value is TOML (`16`, `true`,
/// `["a:1"]`, `"text"`); text that is not valid TOML is taken as a string.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| ConfigError::OverrideForm(arg.to_string()))?;
    let key = key.trim();
    let value = value.trim();
    let (section, name) = key
        .split_once('.')
        .ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
    if !KEYS
        .iter()
        .any(|kd| kd.section == section && kd.key == name)
    {
        return Err(ConfigError::UnknownKey(key.to_string()));
    }
    let text = toml::Value::String(value.to_string());
    let parsed = match format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
    {
        // `rpc.address=7076`: a string key given an unquoted scalar takes it as text
        Some(v)
            if check_key(section, name, &v).is_err() && check_key(section, name, &text).is_ok() =>
        {
            text
        }
        Some(v) => v,
        None => text,
    };
    let sec = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let sec = sec.as_table_mut().ok_or_else(|| ConfigError::BadValue {
        key: section.to_string(),
        message: "expected a table".into(),
    })?;
    sec.insert(name.to_string(), parsed);
    Ok(())
}

/// Checks every key and its type one by one (so errors name the key), then deserializes.
fn from_table(table: toml::Table) -> Result<NodeConfig, ConfigError> {
    for (section, value) in &table {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(ConfigError::UnknownKey(section.clone()));
        }
        let sec = value.as_table().ok_or_else(|| ConfigError::BadValue {
            key: section.clone(),
            message: "expected a table".into(),
        })?;
        for (key, v) in sec {
            let dotted = format!("{section}.{key}");
            if !KEYS.iter().any(|kd| kd.section == section && kd.key == key) {
                return Err(ConfigError::UnknownKey(dotted));
            }
            check_key(section, key, v).map_err(|message| ConfigError::BadValue {
                key: dotted,
                message,
            })?;
        }
    }
    let config = NodeConfig::deserialize(table).map_err(|e| ConfigError::BadValue {
        key: "(config)".into(),
        message: e.to_string(),
    })?;
    config.validate()?;
    Ok(config)
}

/// Checks one value against the type of `section.key`.
fn check_key(section: &str, key: &str, v: &toml::Value) -> Result<(), String> {
    let mut one = toml::Table::new();
    one.insert(key.to_string(), v.clone());
    match section {
        "node" => check::<NodeSection>(one),
        "limits" => check::<LimitsSection>(one),
        "timing" => check::<TimingSection>(one),
        "verify" => check::<VerifySection>(one),
        "io" => check::<IoSection>(one),
        "rep_crawler" => check::<RepCrawlerSection>(one),
        "rpc" => check::<RpcSection>(one),
        _ => check::<ServerSection>(one),
    }
}

fn check<T: DeserializeOwned>(one: toml::Table) -> Result<(), String> {
    T::deserialize(one)
        .map(|_| ())
        .map_err(|e| e.message().trim().to_string())
}
