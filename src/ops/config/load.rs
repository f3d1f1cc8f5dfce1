//! Reading a configuration: TOML text or a file, then `--config section.key=value` overrides
//! applied in order; every key and its type is checked on its own (so an error names the
//! key) before the whole is deserialized and validated.

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ConfigError;
use super::keys::{KEYS, SECTIONS};
use super::schema::{
    IoSection, LimitsSection, NodeConfig, NodeSection, RepCrawlerSection, ServerSection,
    TimingSection, VerifySection,
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
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                parse_table(&text, &path.display().to_string())?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        from_table(table)
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
        _ => check::<ServerSection>(one),
    }
}

fn check<T: DeserializeOwned>(one: toml::Table) -> Result<(), String> {
    T::deserialize(one)
        .map(|_| ())
        .map_err(|e| e.message().trim().to_string())
}
