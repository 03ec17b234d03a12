//! The Python package's build settings: a user's `pip install ./bindings/python` builds the
//! optimized library (maturin's PEP 517 default, the release profile) with the crate's `ffi`
//! feature, while `bindings/python/run-tests.sh` asks for the dev profile (reusing
//! `target/debug`) through `MATURIN_PEP517_ARGS`.

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A TOML line without its comment (a `#` outside a string starts one).
fn strip_toml_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' => return &line[..i],
                _ => {}
            },
        }
    }
    line
}

/// `key = value` pairs of one table (`[name]`) of a TOML file, values as written (quotes
/// removed from plain strings). Enough for the flat `[tool.maturin]` table.
fn toml_table(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = strip_toml_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let header = line.trim_start_matches('[').trim_end_matches(']').trim();
            current = Some(header.to_owned());
            if header == name {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if current.as_deref() != Some(name) {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim().trim_matches('"').to_owned();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
                .to_owned();
            found.get_or_insert_with(Vec::new).push((key, value));
        }
    }
    found
}

#[test]
fn the_python_package_builds_the_release_profile_for_users() {
    let pyproject = read("bindings/python/pyproject.toml");
    let maturin = toml_table(&pyproject, "tool.maturin").expect("a [tool.maturin] table");
    assert!(
        maturin
            .iter()
            .any(|(k, v)| k == "bindings" && v == "uniffi"),
        "the table parsed: {maturin:?}"
    );
    // The UniFFI surface is behind the crate's `ffi` feature: without it the module is empty.
    assert!(
        maturin.iter().any(|(k, v)| k == "features"
            && v.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .any(|f| f.trim().trim_matches('"') == "ffi")),
        "[tool.maturin] features must include \"ffi\": {maturin:?}"
    );
    for (key, value) in &maturin {
        // No profile (maturin's PEP 517 builds default to release), or release itself.
        assert!(
            key != "profile" || value == "release",
            "[tool.maturin] sets {key} = {value:?}: `pip install ./bindings/python` would \
             install an unoptimized build"
        );
        // Stripping removes the UniFFI metadata the bindings are generated from.
        assert!(
            !(key == "strip" && value == "true"),
            "[tool.maturin] strip = true"
        );
    }
}

#[test]
fn the_python_tests_ask_for_the_dev_profile() {
    let script = read("bindings/python/run-tests.sh");
    let lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let export = lines
        .iter()
        .position(|l| l.starts_with("export MATURIN_PEP517_ARGS="))
        .expect("run-tests.sh exports MATURIN_PEP517_ARGS");
    let value = lines[export]
        .trim_start_matches("export MATURIN_PEP517_ARGS=")
        .trim_matches(|c| c == '"' || c == '\'');
    let words: Vec<&str> = value.split_whitespace().collect();
    assert!(
        words.windows(2).any(|w| w == ["--profile", "dev"]),
        "MATURIN_PEP517_ARGS={value}"
    );
    let install = lines
        .iter()
        .position(|l| l.contains("pip install") && l.contains("./bindings/python"))
        .or_else(|| {
            // The install command may be continued onto the next line.
            lines
                .windows(2)
                .position(|w| w[0].contains("pip install") && w[1].contains("./bindings/python"))
        })
        .expect("run-tests.sh installs ./bindings/python");
    assert!(
        export < install,
        "the variable is exported before the install"
    );
}
