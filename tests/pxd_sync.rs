//! `api.pxd` (Cython declarations) must declare exactly what `api.h` declares: every function with
//! the same return and parameter types, the `CoProcessMessage` struct, the `CoProcessStatus` enum with
//! the same numbers, and the handler typedefs. Parameter names, spacing, `struct`/`enum` keywords and
//! Cython's `noexcept`/`nogil`/`except` clauses do not matter.
//!
//! Both files are parsed strictly: a declaration the parser does not recognise fails the test instead
//! of being skipped, so nothing new in api.h (cbindgen's regular output) can slip past unseen.
//! After changing an export: regenerate api.h (`COPROCESS_UPDATE_HEADER=1 cargo test --test
//! api_header`), mirror the change in api.pxd, and run `cargo test --test pxd_sync`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A function's (or a function-pointer typedef's) types, normalised: `const char*`, `CoProcessMessage*`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Signature {
    ret: String,
    params: Vec<String>,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.ret, self.params.join(", "))
    }
}

/// Everything one file declares.
#[derive(Debug, Default)]
struct Declarations {
    functions: BTreeMap<String, Signature>,
    /// Function-pointer typedefs (the handlers).
    callbacks: BTreeMap<String, Signature>,
    /// Enum name -> (member, value); `None` when the file gives no value.
    enums: BTreeMap<String, Vec<(String, Option<i64>)>>,
    /// Struct name -> (field type, field name).
    structs: BTreeMap<String, Vec<(String, String)>>,
}

// ---------------------------------------------------------------------------------------------
// Types

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Star,
}

fn tokenize_type(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if !word.is_empty() {
            tokens.push(Token::Ident(std::mem::take(word)));
        }
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut tokens);
            match c {
                '*' => tokens.push(Token::Star),
                c if c.is_whitespace() => {}
                other => panic!("unsupported character {other:?} in the type `{text}`"),
            }
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

/// Words that make up a C type and are never a parameter's name.
const TYPE_WORDS: &[&str] = &[
    "void", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "const",
    "volatile", "struct", "enum", "bool", "size_t",
];

/// `const char *` -> `const char*`; `struct CoProcessMessage` -> `CoProcessMessage`.
fn render_type(tokens: &[Token]) -> String {
    let mut out = String::new();
    for token in tokens {
        match token {
            Token::Ident(w) if w == "struct" || w == "enum" => {}
            Token::Ident(w) => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
                out.push_str(w);
            }
            Token::Star => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push('*');
            }
        }
    }
    out.trim().to_owned()
}

/// A declarator without its name: `const char *event_name` -> `const char*`.
fn param_type(param: &str) -> String {
    let mut tokens = tokenize_type(param);
    let idents = tokens
        .iter()
        .filter(|t| matches!(t, Token::Ident(w) if w != "const" && w != "volatile"))
        .count();
    if let Some(Token::Ident(last)) = tokens.last() {
        if idents > 1 && !TYPE_WORDS.contains(&last.as_str()) {
            tokens.pop();
        }
    }
    render_type(&tokens)
}

/// `(const char *a, int b)` contents -> types; `void` or nothing -> no parameters.
fn param_list(params: &str) -> Vec<String> {
    let params = params.trim();
    if params.is_empty() || params == "void" {
        return Vec::new();
    }
    params
        .split(',')
        .map(|p| {
            assert!(
                !p.contains('(') && !p.contains('['),
                "unsupported parameter `{p}`: declare function pointers through a typedef"
            );
            param_type(p)
        })
        .collect()
}

/// `RET NAME(PARAMS)` -> (NAME, signature).
fn parse_function(decl: &str) -> Option<(String, Signature)> {
    let open = decl.find('(')?;
    let close = decl.rfind(')')?;
    if decl[close + 1..].trim() != "" || decl[open + 1..close].contains('(') {
        return None;
    }
    let head = decl[..open].trim();
    let name_start = head
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let name = &head[name_start..];
    let ret = &head[..name_start];
    if name.is_empty() || ret.trim().is_empty() {
        return None;
    }
    Some((
        name.to_owned(),
        Signature {
            ret: render_type(&tokenize_type(ret)),
            params: param_list(&decl[open + 1..close]),
        },
    ))
}

/// `RET (*NAME)(PARAMS)` -> (NAME, signature).
fn parse_function_pointer(decl: &str) -> Option<(String, Signature)> {
    let star = decl.find("(*")?;
    let name_end = star + decl[star..].find(')')?;
    let name = decl[star + 2..name_end].trim();
    let rest = decl[name_end + 1..].trim();
    let params = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some((
        name.to_owned(),
        Signature {
            ret: render_type(&tokenize_type(&decl[..star])),
            params: param_list(params),
        },
    ))
}

fn parse_enum_member(text: &str) -> (String, Option<i64>) {
    match text.split_once('=') {
        Some((name, value)) => {
            let value = value.trim();
            let parsed = value
                .parse()
                .unwrap_or_else(|_| panic!("enum value `{value}` is not a decimal integer"));
            (name.trim().to_owned(), Some(parsed))
        }
        None => (text.trim().to_owned(), None),
    }
}

fn parse_field(text: &str) -> (String, String) {
    let text = text.trim();
    let split = text
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or_else(|| panic!("struct field `{text}` has no type"));
    (
        render_type(&tokenize_type(&text[..=split])),
        text[split + 1..].to_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// api.h

/// Removes `/* */` and `//` comments.
fn strip_c_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                let end = rest[b + 2..]
                    .find("*/")
                    .expect("an unterminated /* comment in api.h");
                out.push(' ');
                rest = &rest[b + 2 + end + 2..];
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = &rest[l..];
                rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Drops preprocessor lines, and whole `#ifdef __cplusplus ... #endif` blocks (the `extern "C"`
/// wrapper).
fn strip_preprocessor(text: &str) -> String {
    let mut out = String::new();
    let mut in_cplusplus = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("#ifdef __cplusplus") {
            in_cplusplus = true;
        } else if in_cplusplus {
            if trimmed.starts_with("#endif") {
                in_cplusplus = false;
            }
        } else if !trimmed.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn squash_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_header(text: &str) -> Declarations {
    let text = strip_preprocessor(&strip_c_comments(text));
    let mut decls = Declarations::default();
    // Split into top-level statements at `;` outside braces.
    let mut statements = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.checked_sub(1).expect("unbalanced braces in api.h"),
            ';' if depth == 0 => {
                statements.push(squash_whitespace(&text[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    assert!(
        text[start..].trim().is_empty(),
        "api.h ends with an unterminated declaration: `{}`",
        text[start..].trim()
    );

    for statement in statements {
        let body = |s: &str| -> (String, String) {
            let open = s.find('{').unwrap();
            let close = s.rfind('}').expect("a closing brace");
            (s[..open].trim().to_owned(), s[open + 1..close].to_owned())
        };
        if statement.starts_with("enum ") && statement.contains('{') {
            let (head, inner) = body(&statement);
            let name = head.trim_start_matches("enum").trim().to_owned();
            let members = inner
                .split(',')
                .filter(|m| !m.trim().is_empty())
                .map(parse_enum_member)
                .collect();
            decls.enums.insert(name, members);
        } else if statement.starts_with("struct ") && statement.contains('{') {
            let (head, inner) = body(&statement);
            let name = head.trim_start_matches("struct").trim().to_owned();
            let fields = inner
                .split(';')
                .filter(|f| !f.trim().is_empty())
                .map(parse_field)
                .collect();
            decls.structs.insert(name, fields);
        } else if let Some(rest) = statement.strip_prefix("typedef ") {
            if let Some((name, sig)) = parse_function_pointer(rest) {
                decls.callbacks.insert(name, sig);
            } else {
                // `typedef struct X X;`: an alias of a declared struct, nothing to compare.
                let words: Vec<&str> = rest.split_whitespace().collect();
                assert!(
                    matches!(words.as_slice(), ["struct", a, b] if a == b),
                    "unrecognised typedef in api.h: `{statement}`"
                );
            }
        } else if let Some((name, sig)) = parse_function(&statement) {
            decls.functions.insert(name, sig);
        } else {
            panic!("unrecognised declaration in api.h: `{statement}`");
        }
    }
    decls
}

// ---------------------------------------------------------------------------------------------
// api.pxd

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Strips Cython's exception and GIL clauses after a signature's closing parenthesis.
fn strip_cython_clauses(decl: &str) -> &str {
    let close = decl.rfind(')').unwrap_or(decl.len().saturating_sub(1));
    let tail = decl[close + 1..].trim();
    let known = [
        "noexcept",
        "nogil",
        "with gil",
        "except",
        "except *",
        "except -1",
    ];
    assert!(
        tail.split_whitespace().all(|w| {
            known.iter().any(|k| k.split_whitespace().any(|kw| kw == w))
                || w.parse::<i64>().is_ok()
                || w == "?"
                || w == "+"
        }),
        "unrecognised clause `{tail}` after `{decl}` in api.pxd"
    );
    &decl[..=close]
}

fn parse_pxd(text: &str) -> Declarations {
    // The lines of the `cdef extern from "api.h"` block, without comments, joined across open
    // parentheses.
    let mut lines = text.lines().map(|l| match l.find('#') {
        Some(i) => &l[..i],
        None => l,
    });
    let header = lines
        .by_ref()
        .position(|l| l.trim_start().starts_with("cdef extern from \"api.h\""));
    assert!(
        header.is_some(),
        "api.pxd has no `cdef extern from \"api.h\":` block"
    );
    let mut block: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        if pending.is_none() && indent_of(line) == 0 {
            break; // the block ended
        }
        let (indent, mut joined) = pending
            .take()
            .unwrap_or_else(|| (indent_of(line), String::new()));
        joined.push(' ');
        joined.push_str(line.trim());
        if joined.matches('(').count() > joined.matches(')').count() {
            pending = Some((indent, joined));
        } else {
            block.push((indent, squash_whitespace(&joined)));
        }
    }
    assert!(
        pending.is_none(),
        "api.pxd: unbalanced parentheses in the extern block"
    );

    let mut decls = Declarations::default();
    let mut i = 0;
    while i < block.len() {
        let (indent, line) = &block[i];
        i += 1;
        // The indented lines that follow a `...:` header.
        let members = |i: &mut usize| -> Vec<String> {
            let mut out = Vec::new();
            while *i < block.len() && block[*i].0 > *indent {
                out.push(block[*i].1.clone());
                *i += 1;
            }
            out
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ctypedef" | "cdef", "struct", name] | ["struct", name] if name.ends_with(':') => {
                let fields = members(&mut i).iter().map(|f| parse_field(f)).collect();
                decls
                    .structs
                    .insert(name.trim_end_matches(':').to_owned(), fields);
            }
            ["cdef" | "cpdef" | "ctypedef", "enum", name] | ["enum", name]
                if name.ends_with(':') =>
            {
                let values = members(&mut i)
                    .iter()
                    .map(|m| parse_enum_member(m))
                    .collect();
                decls
                    .enums
                    .insert(name.trim_end_matches(':').to_owned(), values);
            }
            ["ctypedef", ..] => {
                let rest = strip_cython_clauses(line["ctypedef".len()..].trim());
                let (name, sig) = parse_function_pointer(rest).unwrap_or_else(|| {
                    panic!("unrecognised ctypedef in api.pxd (only handler typedefs are expected): `{line}`")
                });
                decls.callbacks.insert(name, sig);
            }
            _ => {
                let (name, sig) = parse_function(strip_cython_clauses(line))
                    .unwrap_or_else(|| panic!("unrecognised declaration in api.pxd: `{line}`"));
                decls.functions.insert(name, sig);
            }
        }
    }
    decls
}

// ---------------------------------------------------------------------------------------------
// Comparison

fn compare_maps<V: PartialEq + fmt::Debug>(
    what: &str,
    header: &BTreeMap<String, V>,
    pxd: &BTreeMap<String, V>,
    show: impl Fn(&V) -> String,
    out: &mut Vec<String>,
) {
    for (name, h) in header {
        match pxd.get(name) {
            None => out.push(format!(
                "{what} `{name}` is in api.h but not in api.pxd: api.h has `{}`",
                show(h)
            )),
            Some(p) if p != h => out.push(format!(
                "{what} `{name}` differs: api.h has `{}`, api.pxd has `{}`",
                show(h),
                show(p)
            )),
            Some(_) => {}
        }
    }
    for (name, p) in pxd {
        if !header.contains_key(name) {
            out.push(format!(
                "{what} `{name}` is in api.pxd but not in api.h: api.pxd has `{}`",
                show(p)
            ));
        }
    }
}

/// Every difference between the two files, one line each; empty when they agree.
fn differences(api_h: &str, api_pxd: &str) -> Vec<String> {
    let header = parse_header(api_h);
    let pxd = parse_pxd(api_pxd);
    let mut out = Vec::new();
    compare_maps(
        "function",
        &header.functions,
        &pxd.functions,
        |s| s.to_string(),
        &mut out,
    );
    compare_maps(
        "handler typedef",
        &header.callbacks,
        &pxd.callbacks,
        |s| format!("(*) {s}"),
        &mut out,
    );
    // Enums member by member (`CoProcessStatus::COPROCESS_OK`), so a new status code is one line.
    let members = |enums: &BTreeMap<String, Vec<(String, Option<i64>)>>| {
        enums
            .iter()
            .flat_map(|(name, members)| {
                members
                    .iter()
                    .map(move |(member, value)| (format!("{name}::{member}"), *value))
            })
            .collect::<BTreeMap<String, Option<i64>>>()
    };
    let enum_names = |enums: &BTreeMap<String, Vec<(String, Option<i64>)>>| {
        enums
            .keys()
            .map(|name| (name.clone(), ()))
            .collect::<BTreeMap<String, ()>>()
    };
    compare_maps(
        "enum",
        &enum_names(&header.enums),
        &enum_names(&pxd.enums),
        |_| "an enum".to_owned(),
        &mut out,
    );
    compare_maps(
        "enum member",
        &members(&header.enums),
        &members(&pxd.enums),
        |value| match value {
            Some(v) => format!("= {v}"),
            None => "no value".to_owned(),
        },
        &mut out,
    );
    compare_maps(
        "struct",
        &header.structs,
        &pxd.structs,
        |fields| {
            fields
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join("; ")
        },
        &mut out,
    );
    out
}

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn api_pxd_declares_exactly_what_api_h_declares() {
    let diffs = differences(&read("api.h"), &read("api.pxd"));
    assert!(
        diffs.is_empty(),
        "api.pxd is out of sync with api.h:\n  {}\nMirror api.h's declarations in api.pxd.",
        diffs.join("\n  ")
    );
}

#[test]
fn the_parsers_see_every_declaration_of_api_h() {
    let header = parse_header(&read("api.h"));
    // An independent look: every `NAME(` outside comments, preprocessor lines and typedefs names a
    // function, even in a declaration cbindgen wrapped over several lines.
    let text = strip_preprocessor(&strip_c_comments(&read("api.h")));
    let mut called: Vec<String> = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim_start().starts_with("typedef"))
    {
        let mut rest = line;
        while let Some(open) = rest.find('(') {
            let before = &rest[..open];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            if start < open {
                called.push(before[start..].to_owned());
            }
            rest = &rest[open + 1..];
        }
    }
    called.sort();
    let parsed: Vec<String> = header.functions.keys().cloned().collect();
    assert_eq!(
        parsed, called,
        "the parser must see every function of api.h"
    );
    assert!(header.functions.contains_key("Dispatch"));
    assert!(header.functions.contains_key("TykTriggerEvent"));
    assert_eq!(
        header.functions["Dispatch"],
        Signature {
            ret: "int".into(),
            params: vec!["const CoProcessMessage*".into(), "CoProcessMessage*".into()],
        }
    );
    assert_eq!(
        header.callbacks["CoProcessEventHandler"],
        Signature {
            ret: "void".into(),
            params: vec!["const char*".into(), "const char*".into(), "void*".into()],
        }
    );
    assert_eq!(
        header.structs["CoProcessMessage"],
        vec![
            ("void*".to_owned(), "p_data".to_owned()),
            ("int".to_owned(), "length".to_owned())
        ]
    );
    let status = &header.enums["CoProcessStatus"];
    assert_eq!(status[0], ("COPROCESS_OK".to_owned(), Some(0)));
    assert!(status.len() >= 16, "{status:?}");

    let pxd = parse_pxd(&read("api.pxd"));
    assert_eq!(pxd.functions.len(), header.functions.len());
}

#[test]
fn a_function_added_to_api_h_only_is_reported() {
    let header = read("api.h").replace(
        "void CoProcessShutdown(void);",
        "void CoProcessShutdown(void);\n\nint CoProcessNewThing(const char *name, int flags);",
    );
    let diffs = differences(&header, &read("api.pxd"));
    assert_eq!(diffs.len(), 1, "{diffs:#?}");
    assert!(
        diffs[0].contains("`CoProcessNewThing` is in api.h but not in api.pxd")
            && diffs[0].contains("int (const char*, int)"),
        "{diffs:#?}"
    );
}

#[test]
fn a_function_removed_from_api_h_is_reported() {
    let header = read("api.h").replace("void Reload(void);", "");
    let diffs = differences(&header, &read("api.pxd"));
    assert_eq!(
        diffs,
        vec!["function `Reload` is in api.pxd but not in api.h: api.pxd has `void ()`"]
    );
}

#[test]
fn a_changed_signature_is_reported_whichever_side_changed() {
    let pxd = read("api.pxd");
    // A parameter's type in the header.
    let header = read("api.h").replace(
        "int CoProcessNextEvent(char **event_name, char **payload);",
        "int CoProcessNextEvent(const char **event_name, char **payload);",
    );
    let diffs = differences(&header, &pxd);
    assert_eq!(
        diffs,
        vec![
            "function `CoProcessNextEvent` differs: api.h has `int (const char**, char**)`, \
             api.pxd has `int (char**, char**)`"
        ]
    );
    // An extra parameter, a return type and a constness in the .pxd.
    let header = read("api.h");
    for (from, to) in [
        (
            "void TykTriggerEvent(char* event_name, char* payload)",
            "void TykTriggerEvent(char* event_name, char* payload, int flags)",
        ),
        ("void CoProcessFree(void* p)", "int CoProcessFree(void* p)"),
        (
            "int Dispatch(const CoProcessMessage* input, CoProcessMessage* out)",
            "int Dispatch(CoProcessMessage* input, CoProcessMessage* out)",
        ),
    ] {
        assert!(pxd.contains(from), "the test expects `{from}` in api.pxd");
        let diffs = differences(&header, &pxd.replace(from, to));
        assert_eq!(diffs.len(), 1, "{to}: {diffs:#?}");
        assert!(diffs[0].contains("differs"), "{diffs:#?}");
    }
}

#[test]
fn enum_struct_and_typedef_changes_are_reported() {
    let pxd = read("api.pxd");
    let header = read("api.h");
    let new_code = header.replace(
        "COPROCESS_ERR_INVALID_JSON = 15,",
        "COPROCESS_ERR_INVALID_JSON = 15,\n  COPROCESS_ERR_TIMEOUT = 16,",
    );
    let diffs = differences(&new_code, &pxd);
    assert_eq!(
        diffs,
        vec![
            "enum member `CoProcessStatus::COPROCESS_ERR_TIMEOUT` is in api.h but not in api.pxd: \
             api.h has `= 16`"
        ]
    );
    let renumbered = pxd.replace("COPROCESS_ERR_EMPTY = 12", "COPROCESS_ERR_EMPTY = 21");
    assert_eq!(differences(&header, &renumbered).len(), 1);
    let field = pxd.replace("int length", "size_t length");
    assert_eq!(differences(&header, &field).len(), 1);
    let handler = header.replace(
        "typedef void (*CoProcessLogHandler)(const char *message, const char *level, void *user_data);",
        "typedef void (*CoProcessLogHandler)(const char *message, int level, void *user_data);",
    );
    let diffs = differences(&handler, &pxd);
    assert!(
        diffs.len() == 1 && diffs[0].contains("handler typedef `CoProcessLogHandler` differs"),
        "{diffs:#?}"
    );
}

#[test]
fn names_spacing_and_cython_clauses_do_not_matter() {
    let header = "/* c */\nstruct M {\n  void* p;\n  int n;\n};\ntypedef struct M M;\n\
        typedef void (*H)(const char *a, void *b);\n\
        #ifdef __cplusplus\nextern \"C\" {\n#endif\n\
        int F(const struct M *in,\n      M *out);\nvoid G(void);\nchar *K(char *key, int ttl);\n\
        #ifdef __cplusplus\n}\n#endif\n";
    let pxd =
        "cdef extern from \"api.h\" nogil:\n    ctypedef struct M:\n        void *p\n        \
        int n\n    ctypedef void (*H)(const char*, void*) noexcept\n    \
        int F(const M* x,\n          M* y) except -1\n    void G()\n    char* K(char* k, int t)\n\n\
        cdef int unrelated\n";
    assert_eq!(differences(header, pxd), Vec::<String>::new());
    assert_eq!(param_type("const char *const_name"), "const char*");
    assert_eq!(param_type("unsigned int"), "unsigned int");
    assert_eq!(param_type("char **"), "char**");
}

#[test]
#[should_panic(expected = "unrecognised declaration in api.h")]
fn an_unknown_kind_of_declaration_in_api_h_fails_loudly() {
    parse_header("extern int COPROCESS_GLOBAL[4];");
}
