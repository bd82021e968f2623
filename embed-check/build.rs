//! Extracts the guide's sink and source (its first two `rust` blocks) into
//! `$OUT_DIR/guide.rs`, so the guide's last example runs them.

fn main() {
    let path = "../docs/writing-sources-and-sinks.md";
    println!("cargo:rerun-if-changed={path}");
    let text = std::fs::read_to_string(path).expect("read the guide");
    let mut code = [String::new(), String::new()];
    let mut blocks = 0;
    let mut inside = false;
    for line in text.lines() {
        if !inside && line.trim() == "```rust" {
            inside = true;
            blocks += 1;
            continue;
        }
        if inside && line.trim() == "```" {
            inside = false;
            continue;
        }
        // Hidden lines (`# ...`) are doc-test scaffolding (`fn main`).
        if inside && blocks <= 2 && !line.starts_with("# ") && line.trim() != "#" {
            code[blocks - 1].push_str(line);
            code[blocks - 1].push('\n');
        }
    }
    assert!(blocks >= 2, "the guide has its sink and source blocks");
    let out = format!(
        "#[allow(missing_docs)]\npub mod sink {{\n{}}}\npub use sink::*;\n\
         #[allow(missing_docs)]\npub mod source {{\n{}}}\npub use source::*;\n",
        code[0], code[1]
    );
    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(format!("{out_dir}/guide.rs"), out).expect("write guide.rs");
}
