//! From scenario text to a [`Scenario`]: one statement per line, checked
//! completely (grammar, era names, limits) before anything runs.
//!
//! The parser works on tokens of one line at a time and never indexes past
//! what it has checked, so no input can make it panic; numbers are built with
//! checked arithmetic, so a number too large for its field is an error, never
//! a wrapped value.

use std::path::Path;

use crate::ast::{
    Advice, Condition, CountCmp, EraName, Errno, Expect, Expectation, FlagField, InvariantKind,
    MapsVma, NumField, OopsKind, Op, PfnMix, Pos, ProcName, Prot, PteState, Scenario, Setup,
    Spanned, Step, StepKind, SysResult,
};
use crate::era::is_known_era;
use crate::error::Error;
use crate::lexer::{Token, TokenKind, tokenize};
use crate::limits;

/// Words that start a statement or an expectation and so cannot name a process.
pub const RESERVED: &[&str] = &[
    "era",
    "eras",
    "memory",
    "swap",
    "spawn",
    "reclaim",
    "rmap-walk",
    "rcu-grace-period",
    "dump",
    "expect",
    "segv",
    "oops",
    "invariant",
    "anon-vmas",
    "clean",
    "no-leaks",
    "maps",
];

/// Reads and parses the scenario at `path`; messages name it as given.
pub fn parse_file(path: &Path) -> Result<Scenario, Error> {
    let file = path.display().to_string();
    let meta =
        std::fs::metadata(path).map_err(|source| Error::Io { file: file.clone(), source })?;
    if meta.len() > limits::MAX_FILE_BYTES {
        return Err(Error::FileTooLarge { file, size: meta.len(), max: limits::MAX_FILE_BYTES });
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io { file: file.clone(), source })?;
    parse_bytes(&file, &bytes)
}

/// Parses scenario text given as bytes (which must be UTF-8).
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Scenario, Error> {
    if bytes.len() as u64 > limits::MAX_FILE_BYTES {
        return Err(Error::FileTooLarge {
            file: file.to_string(),
            size: bytes.len() as u64,
            max: limits::MAX_FILE_BYTES,
        });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(file, text),
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            // The prefix is valid UTF-8 by definition of valid_up_to.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let line = count_u32(prefix.matches('\n').count()).saturating_add(1);
            let last = prefix.rsplit('\n').next().unwrap_or_default();
            let col = count_u32(last.chars().count()).saturating_add(1);
            let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
            Err(Error::NotUtf8 { file: file.to_string(), line, col, byte })
        }
    }
}

/// Parses scenario text.
pub fn parse_str(file: &str, text: &str) -> Result<Scenario, Error> {
    if text.len() as u64 > limits::MAX_FILE_BYTES {
        return Err(Error::FileTooLarge {
            file: file.to_string(),
            size: text.len() as u64,
            max: limits::MAX_FILE_BYTES,
        });
    }
    let mut p = Parser {
        file,
        eras: None,
        memory: None,
        swaps: Vec::new(),
        steps: Vec::new(),
        first_op: None,
        ops: 0,
        procs: 0,
    };
    for (i, line) in text.split('\n').enumerate() {
        let line_no = count_u32(i).saturating_add(1);
        let tokens = tokenize(line, line_no);
        if tokens.is_empty() {
            continue;
        }
        let end_col = count_u32(line.trim_end().chars().count()).saturating_add(1);
        let mut cur = Cursor { file, tokens, i: 0, end: Pos { line: line_no, col: end_col } };
        let text = line.split('#').next().unwrap_or_default().trim();
        p.statement(&mut cur, text)?;
    }
    let eras = match p.eras {
        Some((list, _)) => list,
        None => vec![Spanned { value: limits::DEFAULT_ERA.to_string(), pos: Pos::default() }],
    };
    let memory = p.memory.unwrap_or(Spanned { value: limits::DEFAULT_MEMORY, pos: Pos::default() });
    Ok(Scenario {
        file: file.to_string(),
        setup: Setup { eras, memory, swaps: p.swaps },
        steps: p.steps,
    })
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Shows a token's text in a message: quoted, escaped, and shortened so that
/// a megabyte-long word does not become a megabyte-long message.
fn shown(text: &str) -> String {
    const MAX: usize = 40;
    let mut s: String = text.chars().take(MAX).collect();
    if text.chars().nth(MAX).is_some() {
        s.push_str("...");
    }
    format!("{s:?}")
}

struct Cursor<'a> {
    file: &'a str,
    tokens: Vec<Token<'a>>,
    i: usize,
    end: Pos,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.i)
    }

    fn peek_word(&self) -> Option<&'a str> {
        match self.tokens.get(self.i) {
            Some(t) if t.kind == TokenKind::Word => Some(t.text),
            _ => None,
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.tokens.len()
    }

    /// Where the next token starts, or the end of the line.
    fn pos(&self) -> Pos {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn expected(&self, expected: &str) -> Error {
        let (pos, found) = match self.peek() {
            Some(t) => (t.pos, shown(t.text)),
            None => (self.end, "end of line".to_string()),
        };
        Error::Expected {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            expected: expected.to_string(),
            found,
        }
    }

    /// The next token if it is a word; otherwise an error saying `expected`.
    fn word(&mut self, expected: &str) -> Result<Token<'a>, Error> {
        match self.tokens.get(self.i) {
            Some(t) if t.kind == TokenKind::Word => {
                let t = t.clone();
                self.i += 1;
                Ok(t)
            }
            _ => Err(self.expected(expected)),
        }
    }

    fn punct(&mut self, kind: TokenKind, expected: &str) -> Result<Pos, Error> {
        match self.tokens.get(self.i) {
            Some(t) if t.kind == kind => {
                let pos = t.pos;
                self.i += 1;
                Ok(pos)
            }
            _ => Err(self.expected(expected)),
        }
    }

    fn eat(&mut self, kind: TokenKind) -> bool {
        match self.tokens.get(self.i) {
            Some(t) if t.kind == kind => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }

    fn finish(&self) -> Result<(), Error> {
        if self.at_end() { Ok(()) } else { Err(self.expected("end of line")) }
    }

    fn overflow(&self, tok: &Token<'_>, what: &str) -> Error {
        Error::Overflow {
            file: self.file.to_string(),
            line: tok.pos.line,
            col: tok.pos.col,
            text: shown(tok.text),
            what: what.to_string(),
        }
    }

    fn limit(&self, pos: Pos, what: &'static str, value: u64, min: u64, max: u64) -> Error {
        Error::Limit {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            what,
            value,
            min,
            max,
        }
    }

    /// A decimal or `0x` hex number that fits in 64 bits.
    fn number(&mut self, expected: &str) -> Result<Spanned<u64>, Error> {
        let tok = self.word(expected)?;
        match parse_u64(tok.text) {
            Some(Ok(v)) => Ok(Spanned { value: v, pos: tok.pos }),
            Some(Err(())) => Err(self.overflow(&tok, "64 bits")),
            None => {
                self.i -= 1;
                Err(self.expected(expected))
            }
        }
    }

    /// A number with an optional binary `K`, `M` or `G` suffix.
    fn size(&mut self, expected: &str) -> Result<Spanned<u64>, Error> {
        let tok = self.word(expected)?;
        match parse_size(tok.text) {
            Some(Ok(v)) => Ok(Spanned { value: v, pos: tok.pos }),
            Some(Err(())) => Err(self.overflow(&tok, "64 bits")),
            None => {
                self.i -= 1;
                Err(self.expected(expected))
            }
        }
    }

    /// A byte value, 0..=0xff.
    fn byte(&mut self, expected: &str) -> Result<Spanned<u8>, Error> {
        let n = self.number(expected)?;
        match u8::try_from(n.value) {
            Ok(b) => Ok(Spanned { value: b, pos: n.pos }),
            Err(_) => {
                let tok = self.tokens.get(self.i.saturating_sub(1)).cloned();
                Err(match tok {
                    Some(t) => self.overflow(&t, "a byte (0..=0xff)"),
                    None => self.expected(expected),
                })
            }
        }
    }

    /// A length for a range operation: 1..=MAX_LEN bytes.
    fn len(&mut self) -> Result<Spanned<u64>, Error> {
        let n = self.size("a length (e.g. 4K, 0x2000)")?;
        if n.value == 0 || n.value > limits::MAX_LEN {
            return Err(self.limit(n.pos, "length", n.value, 1, limits::MAX_LEN));
        }
        Ok(n)
    }

    /// The length of a system call: 0..=MAX_LEN bytes (a zero length is
    /// the call's own EINVAL or success, not a parse error).
    fn sys_len(&mut self) -> Result<Spanned<u64>, Error> {
        let n = self.size("a length (e.g. 4K, 0x2000)")?;
        if n.value > limits::MAX_LEN {
            return Err(self.limit(n.pos, "length", n.value, 0, limits::MAX_LEN));
        }
        Ok(n)
    }

    /// `= 0`, `= ERRNO` or nothing, after a system call's arguments.
    fn sys_result(&mut self) -> Result<Option<Spanned<SysResult>>, Error> {
        if self.at_end() {
            return Ok(None);
        }
        self.punct(TokenKind::Equals, "`= 0`, `= ERRNO` or end of line")?;
        const WHAT: &str = "a result: 0 or an errno name (ENOMEM, EINVAL, EEXIST, ...)";
        let Some(text) = self.peek_word() else { return Err(self.expected(WHAT)) };
        let value = if text == "0" {
            Ok(())
        } else {
            match Errno::from_name(text) {
                Some(e) => Err(e),
                None => return Err(self.expected(WHAT)),
            }
        };
        let tok = self.word(WHAT)?;
        Ok(Some(Spanned { value, pos: tok.pos }))
    }

    fn addr(&mut self) -> Result<Spanned<u64>, Error> {
        self.number("an address (e.g. 0x7f0000000000)")
    }

    /// A process name: an identifier that is not a keyword.
    fn name(&mut self) -> Result<ProcName, Error> {
        const WHAT: &str = "a process name (a letter or _, then letters, digits, _ or -)";
        let Some(text) = self.peek_word() else {
            return Err(self.expected(WHAT));
        };
        if !is_identifier(text) || RESERVED.contains(&text) {
            return Err(self.expected(WHAT));
        }
        let tok = self.word(WHAT)?;
        Ok(Spanned { value: tok.text.to_string(), pos: tok.pos })
    }

    fn era(&mut self) -> Result<EraName, Error> {
        let expected = format!("an era ({})", crate::era::known_names());
        match self.peek_word() {
            Some(text) if is_known_era(text) => {
                let tok = self.word(&expected)?;
                Ok(Spanned { value: tok.text.to_string(), pos: tok.pos })
            }
            _ => Err(self.expected(&expected)),
        }
    }

    fn prot(&mut self) -> Result<Spanned<Prot>, Error> {
        const WHAT: &str = "a protection (none, r, rw, rx, rwx)";
        let word = self.peek_word();
        let Some(prot) = Prot::ALL.into_iter().find(|p| Some(p.as_str()) == word) else {
            return Err(self.expected(WHAT));
        };
        let tok = self.word(WHAT)?;
        Ok(Spanned { value: prot, pos: tok.pos })
    }

    fn yes_no(&mut self) -> Result<bool, Error> {
        match self.peek_word() {
            Some("yes") => {
                self.i += 1;
                Ok(true)
            }
            Some("no") => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(self.expected("yes or no")),
        }
    }

    fn duplicate(&self, pos: Pos, what: String, first_line: u32) -> Error {
        Error::Duplicate {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            what,
            first_line,
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && s.chars().count() <= limits::MAX_NAME_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `None`: not a number at all; `Some(Err)`: a number too large for 64 bits.
fn parse_u64(text: &str) -> Option<Result<u64, ()>> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = u64::from(c.to_digit(radix)?);
        match v.checked_mul(u64::from(radix)).and_then(|v| v.checked_add(d)) {
            Some(n) => v = n,
            None => return Some(Err(())),
        }
    }
    Some(Ok(v))
}

fn parse_size(text: &str) -> Option<Result<u64, ()>> {
    let (num, shift) = if let Some(n) = text.strip_suffix('K') {
        (n, 10)
    } else if let Some(n) = text.strip_suffix('M') {
        (n, 20)
    } else if let Some(n) = text.strip_suffix('G') {
        (n, 30)
    } else {
        (text, 0)
    };
    match parse_u64(num)? {
        Ok(v) => Some(v.checked_mul(1u64 << shift).ok_or(())),
        Err(()) => Some(Err(())),
    }
}

struct Parser<'a> {
    file: &'a str,
    /// The era list and the line that gave it.
    eras: Option<(Vec<EraName>, u32)>,
    memory: Option<Spanned<u64>>,
    swaps: Vec<Spanned<u64>>,
    steps: Vec<Step>,
    /// Line of the first operation, after which setup is closed.
    first_op: Option<u32>,
    ops: usize,
    procs: usize,
}

impl Parser<'_> {
    fn statement(&mut self, cur: &mut Cursor<'_>, text: &str) -> Result<(), Error> {
        let start = cur.pos();
        let Some(first) = cur.peek_word() else {
            return Err(cur.expected("a statement (era, memory, swap, spawn, expect, P OP, ...)"));
        };
        match first {
            "era" | "eras" | "memory" | "swap" => self.setup(cur, first, start),
            "expect" => {
                cur.i += 1;
                let e = expectation(cur)?;
                cur.finish()?;
                self.steps.push(Step {
                    pos: start,
                    text: text.to_string(),
                    kind: StepKind::Expect(e),
                });
                Ok(())
            }
            _ => {
                let op = operation(cur)?;
                cur.finish()?;
                self.ops += 1;
                if self.ops > limits::MAX_OPERATIONS {
                    return Err(Error::TooMany {
                        file: self.file.to_string(),
                        line: start.line,
                        col: start.col,
                        what: "operations",
                        max: limits::MAX_OPERATIONS,
                    });
                }
                if matches!(op, Op::Spawn { .. } | Op::Fork { .. }) {
                    self.procs += 1;
                    if self.procs > limits::MAX_PROCESSES {
                        return Err(Error::TooMany {
                            file: self.file.to_string(),
                            line: start.line,
                            col: start.col,
                            what: "processes (spawn and fork)",
                            max: limits::MAX_PROCESSES,
                        });
                    }
                }
                self.first_op.get_or_insert(start.line);
                self.steps.push(Step {
                    pos: start,
                    text: text.to_string(),
                    kind: StepKind::Op(op),
                });
                Ok(())
            }
        }
    }

    fn setup(&mut self, cur: &mut Cursor<'_>, kw: &str, start: Pos) -> Result<(), Error> {
        let what: &'static str = match kw {
            "era" => "era",
            "eras" => "eras",
            "memory" => "memory",
            _ => "swap",
        };
        if let Some(first_op) = self.first_op {
            return Err(Error::SetupAfterOperation {
                file: self.file.to_string(),
                line: start.line,
                col: start.col,
                what,
                first_op,
            });
        }
        cur.i += 1;
        match what {
            "era" | "eras" => {
                if let Some((_, first)) = &self.eras {
                    return Err(cur.duplicate(start, "the era list (era/eras)".into(), *first));
                }
                let mut list: Vec<EraName> = vec![cur.era()?];
                if what == "eras" {
                    while !cur.at_end() {
                        let e = cur.era()?;
                        if let Some(prev) = list.iter().find(|p| p.value == e.value) {
                            return Err(cur.duplicate(
                                e.pos,
                                format!("era {}", e.value),
                                prev.pos.line,
                            ));
                        }
                        list.push(e);
                    }
                }
                cur.finish()?;
                self.eras = Some((list, start.line));
            }
            "memory" => {
                if let Some(first) = &self.memory {
                    return Err(cur.duplicate(start, "memory".into(), first.pos.line));
                }
                let m = cur.size("a memory size (e.g. 64M)")?;
                check_pages(cur, &m, "memory size", limits::MIN_MEMORY, limits::MAX_MEMORY)?;
                cur.finish()?;
                self.memory = Some(m);
            }
            _ => {
                let s = cur.size("a swap size (e.g. 64M)")?;
                check_pages(cur, &s, "swap size", limits::MIN_SWAP, limits::MAX_SWAP)?;
                let total: u64 = self.swaps.iter().map(|x| x.value).sum::<u64>() + s.value;
                if total > limits::MAX_SWAP {
                    return Err(cur.limit(s.pos, "total swap size", total, 0, limits::MAX_SWAP));
                }
                cur.finish()?;
                if self.swaps.len() >= limits::MAX_SWAP_DEVICES {
                    return Err(Error::TooMany {
                        file: self.file.to_string(),
                        line: start.line,
                        col: start.col,
                        what: "swap devices",
                        max: limits::MAX_SWAP_DEVICES,
                    });
                }
                self.swaps.push(s);
            }
        }
        Ok(())
    }
}

fn check_pages(
    cur: &Cursor<'_>,
    n: &Spanned<u64>,
    what: &'static str,
    min: u64,
    max: u64,
) -> Result<(), Error> {
    if n.value < min || n.value > max {
        return Err(cur.limit(n.pos, what, n.value, min, max));
    }
    if n.value % 4096 != 0 {
        return Err(Error::Unaligned {
            file: cur.file.to_string(),
            line: n.pos.line,
            col: n.pos.col,
            what,
            value: n.value,
        });
    }
    Ok(())
}

fn operation(cur: &mut Cursor<'_>) -> Result<Op, Error> {
    match cur.peek_word() {
        Some("spawn") => {
            cur.i += 1;
            Ok(Op::Spawn { proc: cur.name()? })
        }
        Some("reclaim") => {
            cur.i += 1;
            let proc = cur.name()?;
            let addr = cur.addr()?;
            let mut len = None;
            let mut keep_cache = false;
            if cur.peek_word() == Some("keep-cache") {
                cur.i += 1;
                keep_cache = true;
            } else if !cur.at_end() {
                len = Some(cur.len()?);
                if cur.peek_word() == Some("keep-cache") {
                    cur.i += 1;
                    keep_cache = true;
                }
            }
            Ok(Op::Reclaim { proc, addr, len, keep_cache })
        }
        Some("rmap-walk") => {
            cur.i += 1;
            Ok(Op::RmapWalk { proc: cur.name()?, addr: cur.addr()? })
        }
        Some("rcu-grace-period") => {
            cur.i += 1;
            Ok(Op::RcuGracePeriod)
        }
        Some("dump") => {
            cur.i += 1;
            let proc = cur.name()?;
            let addr = if cur.at_end() { None } else { Some(cur.addr()?) };
            Ok(Op::Dump { proc, addr })
        }
        _ => {
            let proc = cur.name().map_err(|_| {
                cur.expected("a statement (era, memory, swap, spawn, reclaim, rmap-walk, rcu-grace-period, dump, expect) or a process name")
            })?;
            process_op(cur, proc)
        }
    }
}

fn process_op(cur: &mut Cursor<'_>, proc: ProcName) -> Result<Op, Error> {
    const VERBS: &str =
        "an operation (mmap, munmap, mprotect, madvise, write, read, fork, exit, execve)";
    let verb = match cur.peek_word() {
        Some(v) => v,
        None => return Err(cur.expected(VERBS)),
    };
    let op = match verb {
        "mmap" => {
            cur.i += 1;
            let (addr, len, prot) = (cur.addr()?, cur.sys_len()?, cur.prot()?);
            Op::Mmap { proc, addr, len, prot, result: cur.sys_result()? }
        }
        "munmap" => {
            cur.i += 1;
            let (addr, len) = (cur.addr()?, cur.sys_len()?);
            Op::Munmap { proc, addr, len, result: cur.sys_result()? }
        }
        "mprotect" => {
            cur.i += 1;
            let (addr, len, prot) = (cur.addr()?, cur.sys_len()?, cur.prot()?);
            Op::Mprotect { proc, addr, len, prot, result: cur.sys_result()? }
        }
        "madvise" => {
            cur.i += 1;
            let addr = cur.addr()?;
            let len = cur.sys_len()?;
            let advice = match cur.peek_word() {
                Some("dontneed") => {
                    let t = cur.word("dontneed")?;
                    Spanned { value: Advice::DontNeed, pos: t.pos }
                }
                _ => return Err(cur.expected("an advice (dontneed)")),
            };
            Op::Madvise { proc, addr, len, advice, result: cur.sys_result()? }
        }
        "write" => {
            cur.i += 1;
            let addr = cur.addr()?;
            let value = if cur.at_end() { None } else { Some(cur.byte("a byte value")?) };
            Op::Write { proc, addr, value }
        }
        "read" => {
            cur.i += 1;
            let addr = cur.addr()?;
            let expect = if cur.at_end() {
                None
            } else {
                cur.punct(TokenKind::Equals, "`= VALUE` or end of line")?;
                Some(cur.byte("a byte value")?)
            };
            Op::Read { proc, addr, expect }
        }
        "fork" => {
            cur.i += 1;
            Op::Fork { parent: proc, child: cur.name()? }
        }
        "exit" => {
            cur.i += 1;
            Op::Exit { proc }
        }
        "execve" => {
            cur.i += 1;
            Op::Execve { proc }
        }
        _ => return Err(cur.expected(VERBS)),
    };
    Ok(op)
}

fn expectation(cur: &mut Cursor<'_>) -> Result<Expectation, Error> {
    let eras = if cur.eat(TokenKind::LBracket) {
        let mut list: Vec<EraName> = vec![cur.era()?];
        while !cur.eat(TokenKind::RBracket) {
            if cur.at_end() {
                return Err(cur.expected("an era or `]`"));
            }
            let e = cur.era()?;
            if let Some(prev) = list.iter().find(|p| p.value == e.value) {
                return Err(cur.duplicate(e.pos, format!("era {}", e.value), prev.pos.line));
            }
            list.push(e);
        }
        Some(list)
    } else {
        None
    };
    const WHAT: &str = "an expectation (P ADDR ..., segv, oops, invariant, anon-vmas, clean, no-leaks, maps) or `[eras]`";
    let what = match cur.peek_word() {
        Some("segv") => {
            cur.i += 1;
            Expect::Segv
        }
        Some("clean") => {
            cur.i += 1;
            Expect::Clean
        }
        Some("no-leaks") => {
            cur.i += 1;
            Expect::NoLeaks
        }
        Some("oops") => {
            cur.i += 1;
            let names: Vec<&str> = OopsKind::ALL.iter().map(|k| k.as_str()).collect();
            let expected = format!("an oops kind ({})", names.join(", "));
            let found =
                cur.peek_word().and_then(|w| OopsKind::ALL.into_iter().find(|k| k.as_str() == w));
            match found {
                Some(kind) => {
                    let t = cur.word(&expected)?;
                    Expect::Oops(Spanned { value: kind, pos: t.pos })
                }
                None => return Err(cur.expected(&expected)),
            }
        }
        Some("invariant") => {
            cur.i += 1;
            let names: Vec<&str> = InvariantKind::ALL.iter().map(|k| k.as_str()).collect();
            let expected = format!("an invariant name ({})", names.join(", "));
            let found = cur
                .peek_word()
                .and_then(|w| InvariantKind::ALL.into_iter().find(|k| k.as_str() == w));
            match found {
                Some(name) => {
                    let t = cur.word(&expected)?;
                    Expect::Invariant(Spanned { value: name, pos: t.pos })
                }
                None => return Err(cur.expected(&expected)),
            }
        }
        Some("maps") => {
            cur.i += 1;
            let proc = cur.name()?;
            let mut vmas: Vec<Spanned<MapsVma>> = Vec::new();
            while !cur.at_end() {
                let v = maps_vma(cur)?;
                if let Some(prev) = vmas.last() {
                    if v.value.start < prev.value.end {
                        cur.i -= 2;
                        return Err(
                            cur.expected("VMAs in address order, not overlapping the one before")
                        );
                    }
                }
                vmas.push(v);
            }
            Expect::Maps { proc, vmas }
        }
        Some("anon-vmas") => {
            cur.i += 1;
            let cmp = if cur.eat(TokenKind::Less) {
                cur.punct(TokenKind::Equals, "`=` (as in `<=`)")?;
                CountCmp::AtMost
            } else if cur.eat(TokenKind::Greater) {
                cur.punct(TokenKind::Equals, "`=` (as in `>=`)")?;
                CountCmp::AtLeast
            } else {
                CountCmp::Eq
            };
            let count = cur.number("a count of anon_vmas")?;
            Expect::AnonVmas { cmp, count }
        }
        Some(_) => entry_expectation(cur)?,
        None => return Err(cur.expected(WHAT)),
    };
    Ok(Expectation { eras, what })
}

/// `START-END PERMS` of `expect maps`: `0x7f0000000000-0x7f0000002000 rw-p`.
fn maps_vma(cur: &mut Cursor<'_>) -> Result<Spanned<MapsVma>, Error> {
    const RANGE: &str = "a VMA range START-END (e.g. 0x7f0000000000-0x7f0000002000)";
    const PERMS: &str = "perms as /proc/PID/maps prints them (---p r--p rw-p r-xp rwxp)";
    let tok = cur.word(RANGE)?;
    let parsed = tok.text.split_once('-').and_then(|(a, b)| match (parse_u64(a), parse_u64(b)) {
        (Some(Ok(a)), Some(Ok(b))) => Some((a, b)),
        _ => None,
    });
    let Some((start, end)) = parsed.filter(|(a, b)| a < b && a % 4096 == 0 && b % 4096 == 0) else {
        cur.i -= 1;
        return Err(cur.expected(&format!("{RANGE}, page aligned, start below end")));
    };
    let prot = match cur.peek_word() {
        Some("---p") => Prot::None,
        Some("r--p") => Prot::R,
        Some("rw-p") => Prot::Rw,
        Some("r-xp") => Prot::Rx,
        Some("rwxp") => Prot::Rwx,
        _ => return Err(cur.expected(PERMS)),
    };
    cur.i += 1;
    Ok(Spanned { value: MapsVma { start, end, prot }, pos: tok.pos })
}

fn entry_expectation(cur: &mut Cursor<'_>) -> Result<Expect, Error> {
    let proc = cur.name().map_err(|_| {
        cur.expected(
            "an expectation (P ADDR ..., segv, oops, invariant, anon-vmas, clean, no-leaks)",
        )
    })?;
    let addr = cur.addr()?;
    let state = match cur.peek_word() {
        Some(w @ ("present" | "swapped" | "none")) => {
            let s = match w {
                "present" => PteState::Present,
                "swapped" => PteState::Swapped,
                _ => PteState::None,
            };
            let t = cur.word("a state")?;
            Some(Spanned { value: s, pos: t.pos })
        }
        _ => None,
    };
    let mut conditions: Vec<Spanned<Condition>> = Vec::new();
    const COND: &str = "a state (present, swapped, none) or a condition (writable=, dirty=, \
                        accessed=, mapcount=, exclusive=, swapcache=, anon-exclusive=, type=, \
                        offset=, swapcount=, pte=, same-page)";
    while !cur.at_end() {
        let Some(word) = cur.peek_word() else {
            return Err(cur.expected(COND));
        };
        let pos = cur.pos();
        let cond = match word {
            "same-page" => {
                cur.i += 1;
                Condition::SamePage { proc: cur.name()?, addr: cur.addr()? }
            }
            "writable" | "dirty" | "accessed" | "exclusive" | "swapcache" | "anon-exclusive" => {
                let field = match word {
                    "writable" => FlagField::Writable,
                    "dirty" => FlagField::Dirty,
                    "accessed" => FlagField::Accessed,
                    "exclusive" => FlagField::Exclusive,
                    "swapcache" => FlagField::SwapCache,
                    _ => FlagField::AnonExclusive,
                };
                cur.i += 1;
                cur.punct(TokenKind::Equals, "`=`")?;
                Condition::Flag { field, value: cur.yes_no()? }
            }
            "mapcount" | "type" | "offset" | "swapcount" => {
                let field = match word {
                    "mapcount" => NumField::MapCount,
                    "type" => NumField::SwapType,
                    "swapcount" => NumField::SwapCount,
                    _ => NumField::SwapOffset,
                };
                cur.i += 1;
                cur.punct(TokenKind::Equals, "`=`")?;
                let n = cur.number("a number")?;
                if field == NumField::SwapType && n.value > 31 {
                    return Err(cur.limit(n.pos, "swap type", n.value, 0, 31));
                }
                Condition::Num { field, value: n.value }
            }
            "pte" => {
                cur.i += 1;
                cur.punct(TokenKind::Equals, "`=`")?;
                let n = cur.number("a 64-bit entry value")?;
                let pfn = if cur.eat(TokenKind::Pipe) {
                    PfnMix::Or
                } else if cur.eat(TokenKind::Caret) {
                    PfnMix::Xor
                } else {
                    PfnMix::None
                };
                if pfn != PfnMix::None {
                    match cur.peek_word() {
                        Some("pfn") => cur.i += 1,
                        _ => return Err(cur.expected("`pfn` after `|` or `^`")),
                    }
                }
                Condition::Pte { value: n.value, pfn }
            }
            _ => return Err(cur.expected(COND)),
        };
        if let Some(prev) = conditions.iter().find(|c| same_field(&c.value, &cond)) {
            return Err(cur.duplicate(pos, format!("condition `{word}`"), prev.pos.line));
        }
        conditions.push(Spanned { value: cond, pos });
    }
    if state.is_none() && conditions.is_empty() {
        return Err(cur.expected(COND));
    }
    Ok(Expect::Entry { proc, addr, state, conditions })
}

/// Whether two conditions constrain the same field (and so contradict or
/// repeat each other). `same-page` may be given for several partners.
fn same_field(a: &Condition, b: &Condition) -> bool {
    match (a, b) {
        (Condition::Flag { field: x, .. }, Condition::Flag { field: y, .. }) => x == y,
        (Condition::Num { field: x, .. }, Condition::Num { field: y, .. }) => x == y,
        (Condition::Pte { .. }, Condition::Pte { .. }) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, Error> {
        parse_str("t.scn", text)
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(s) => panic!("parsed but should not: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(parse_u64("0x10"), Some(Ok(16)));
        assert_eq!(parse_u64("10"), Some(Ok(10)));
        assert_eq!(parse_u64("0xffffffffffffffff"), Some(Ok(u64::MAX)));
        assert_eq!(parse_u64("0x10000000000000000"), Some(Err(())));
        assert_eq!(parse_u64("18446744073709551616"), Some(Err(())));
        assert_eq!(parse_u64("0x"), None);
        assert_eq!(parse_u64("1a"), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_size("16K"), Some(Ok(16 << 10)));
        assert_eq!(parse_size("64M"), Some(Ok(64 << 20)));
        assert_eq!(parse_size("0x2G"), Some(Ok(2 << 30)));
        assert_eq!(parse_size("17179869184G"), Some(Err(())));
        assert_eq!(parse_size("1T"), None);
        assert_eq!(parse_size("K"), None);
    }

    #[test]
    fn setup_defaults_and_forms() {
        let s = parse("spawn A\n").unwrap();
        assert_eq!(s.setup.eras.len(), 1);
        assert_eq!(s.setup.eras[0].value, "6.18");
        assert_eq!(s.setup.memory.value, 64 << 20);
        assert!(s.setup.swaps.is_empty());
        let s =
            parse("eras 2.6.33 2.6.34-rc3 seed 2.6.34 2.6.36 6.18\nmemory 16M\nswap 1M\nswap 8K\n")
                .unwrap();
        let eras: Vec<&str> = s.setup.eras.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(eras, ["2.6.33", "2.6.34-rc3", "seed", "2.6.34", "2.6.36", "6.18"]);
        assert_eq!(s.setup.memory.value, 16 << 20);
        assert_eq!(s.setup.swaps.iter().map(|s| s.value).collect::<Vec<_>>(), [1 << 20, 8192]);
        assert_eq!(parse("era seed\n").unwrap().setup.eras[0].value, "seed");
    }

    #[test]
    fn every_operation_form() {
        let text = "\
spawn A
A mmap 0x7f0000000000 16K rw
A mmap 0x7f0000010000 4K none
A mmap 0x7f0000020000 4K r
A mmap 0x7f0000030000 4K rx
A mmap 0x7f0000040000 4K rwx
A munmap 0x7f0000000000 4K
A mprotect 0x7f0000000000 4K r
A madvise 0x7f0000000000 4K dontneed
A write 0x7f0000000000 0xaa
A write 0x7f0000000000
A read  0x7f0000000000
A read  0x7f0000000000 = 0xaa
A fork B
B exit
A execve
reclaim A 0x7f0000000000
reclaim A 0x7f0000000000 8K
reclaim A 0x7f0000000000 keep-cache
reclaim A 0x7f0000000000 4K keep-cache
rmap-walk A 0x7f0000000000
rcu-grace-period
dump A
dump A 0x7f0000000000
";
        let s = parse(text).unwrap();
        let verbs: Vec<&str> = s
            .steps
            .iter()
            .map(|st| match &st.kind {
                StepKind::Op(op) => op.verb(),
                StepKind::Expect(_) => "expect",
            })
            .collect();
        assert_eq!(verbs.len(), 24);
        assert_eq!(verbs[0], "spawn");
        assert_eq!(verbs[23], "dump");
        assert_eq!(s.steps[12].pos, Pos { line: 13, col: 1 });
        match &s.steps[12].kind {
            StepKind::Op(Op::Read { expect: Some(v), .. }) => {
                assert_eq!(v.value, 0xaa);
                assert_eq!(v.pos, Pos { line: 13, col: 26 });
            }
            other => panic!("{other:?}"),
        }
        match &s.steps[19].kind {
            StepKind::Op(Op::Reclaim { len: Some(l), keep_cache: true, .. }) => {
                assert_eq!(l.value, 4096)
            }
            other => panic!("{other:?}"),
        }
        match &s.steps[18].kind {
            StepKind::Op(Op::Reclaim { len: None, keep_cache: true, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn system_call_results_and_maps() {
        let sc = parse(
            "spawn A\nA mmap 0x1000 0 rw = EINVAL\nA munmap 0x1000 4K = 0\n\
             A mprotect 0x1000 12K r = ENOMEM\nA madvise 0x1000 0x10 dontneed=0\n\
             expect maps A 0x1000-0x2000 rw-p 0x2000-0x3000 ---p\nexpect maps A\n",
        )
        .unwrap();
        let results: Vec<Option<SysResult>> = sc
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Op(
                    Op::Mmap { result, .. }
                    | Op::Munmap { result, .. }
                    | Op::Mprotect { result, .. }
                    | Op::Madvise { result, .. },
                ) => Some(result.as_ref().map(|r| r.value)),
                _ => None,
            })
            .collect();
        assert_eq!(
            results,
            [Some(Err(Errno::EINVAL)), Some(Ok(())), Some(Err(Errno::ENOMEM)), Some(Ok(()))]
        );
        let StepKind::Expect(Expectation { what: Expect::Maps { vmas, .. }, .. }) =
            &sc.steps[5].kind
        else {
            panic!("not a maps expectation: {:?}", sc.steps[5]);
        };
        let v: Vec<MapsVma> = vmas.iter().map(|v| v.value).collect();
        assert_eq!(
            v,
            [
                MapsVma { start: 0x1000, end: 0x2000, prot: Prot::Rw },
                MapsVma { start: 0x2000, end: 0x3000, prot: Prot::None }
            ]
        );
        assert!(
            matches!(&sc.steps[6].kind, StepKind::Expect(Expectation { what: Expect::Maps { vmas, .. }, .. }) if vmas.is_empty())
        );
    }

    #[test]
    fn every_expectation_form() {
        let text = "\
spawn A
expect A 0x7f0000000000 present
expect A 0x7f0000000000 swapped type=0 offset=0
expect A 0x7f0000000000 none
expect A 0x7f0000000000 present writable=no mapcount=2 exclusive=no swapcache=no dirty=yes
expect A 0x7f0000000000 present anon-exclusive=yes accessed=no
expect A 0x7f0000000000 pte=0x8000000000000067|pfn
expect A 0x7f0000000000 pte=0x07FFFFFFFFFFFC00 swapcount=2
expect A 0x7f0000000000 same-page B 0x7f0000000000
expect segv
expect oops anon-vma-use-after-free
expect invariant rmap-unreachable
expect oops anon-vma-reused
expect anon-vmas 3
expect anon-vmas <= 3
expect anon-vmas >= 3
expect clean
expect no-leaks
expect [2.6.34-rc3 seed] oops anon-vma-use-after-free
expect [2.6.34 2.6.36 6.18] clean
expect [ seed ] A 0x10 none
expect A 0x10 present pte=0x000FFFFFFFFFF160^pfn
";
        let s = parse(text).unwrap();
        assert_eq!(s.steps.len(), 22);
        match &s.steps[21].kind {
            StepKind::Expect(Expectation { what: Expect::Entry { conditions, .. }, .. }) => {
                assert_eq!(
                    conditions[0].value,
                    Condition::Pte { value: 0x000FFFFFFFFFF160, pfn: PfnMix::Xor }
                )
            }
            other => panic!("{other:?}"),
        }
        let exp = |i: usize| match &s.steps[i].kind {
            StepKind::Expect(e) => e.clone(),
            other => panic!("{other:?}"),
        };
        match exp(6).what {
            Expect::Entry { conditions, state: None, .. } => assert_eq!(
                conditions[0].value,
                Condition::Pte { value: 0x8000000000000067, pfn: PfnMix::Or }
            ),
            other => panic!("{other:?}"),
        }
        match exp(4).what {
            Expect::Entry { conditions, state: Some(st), .. } => {
                assert_eq!(st.value, PteState::Present);
                assert_eq!(conditions.len(), 5);
                assert_eq!(
                    conditions[1].value,
                    Condition::Num { field: NumField::MapCount, value: 2 }
                );
            }
            other => panic!("{other:?}"),
        }
        let e = exp(18);
        assert!(e.applies_to("seed") && e.applies_to("2.6.34-rc3") && !e.applies_to("6.18"));
        assert!(exp(16).applies_to("6.18"));
        assert!(matches!(exp(14).what, Expect::AnonVmas { cmp: CountCmp::AtMost, .. }));
        assert!(matches!(
            exp(11).what,
            Expect::Invariant(Spanned { value: InvariantKind::RmapUnreachable, .. })
        ));
    }

    #[test]
    fn errors_name_position_expected_and_found() {
        assert_eq!(
            err("spawn A\nA mmap 0x1000 4K rwz\n"),
            "t.scn:2:18: expected a protection (none, r, rw, rx, rwx), found \"rwz\""
        );
        assert_eq!(
            err("spawn A\nA mmap 0x1000\n"),
            "t.scn:2:14: expected a length (e.g. 4K, 0x2000), found end of line"
        );
        assert!(err("era 2.6.35\n").starts_with("t.scn:1:5: expected an era (2.6.33,"));
        assert_eq!(
            err("spawn A\nA write 0x1000 0x100\n"),
            "t.scn:2:16: number \"0x100\" does not fit in a byte (0..=0xff)"
        );
        assert_eq!(
            err("spawn A\nA read 0x10000000000000000\n"),
            "t.scn:2:8: number \"0x10000000000000000\" does not fit in 64 bits"
        );
        assert_eq!(
            err("memory 1T\n"),
            "t.scn:1:8: expected a memory size (e.g. 64M), found \"1T\""
        );
        assert_eq!(
            err("memory 1024G\n"),
            "t.scn:1:8: memory size 0x10000000000 is outside the limit 0x40000..=0x10000000"
        );
        assert_eq!(
            err("spawn A\nmemory 1M\n"),
            "t.scn:2:1: `memory` must come before the first operation (line 1)"
        );
        assert_eq!(
            err("era seed\neras 6.18\n"),
            "t.scn:2:1: the era list (era/eras) given twice (first at line 1)"
        );
        assert_eq!(err("eras seed seed\n"), "t.scn:1:11: era seed given twice (first at line 1)");
        assert_eq!(
            err("spawn expect\n").split(',').next().unwrap(),
            "t.scn:1:7: expected a process name (a letter or _"
        );
        assert_eq!(
            err("expect [seed A 0x1 none\n"),
            "t.scn:1:14: expected an era (2.6.33, 2.6.34-rc3, seed, 2.6.34, 2.6.36, 6.18), found \"A\""
        );
        assert_eq!(
            err("expect A 0x1 writable=no writable=yes\n"),
            "t.scn:1:26: condition `writable` given twice (first at line 1)"
        );
        assert_eq!(err("expect A 0x1\n").split(" found ").nth(1).unwrap(), "end of line");
        assert_eq!(
            err("expect A 0x1 pte=0x67|pf\n").split(',').next().unwrap(),
            "t.scn:1:23: expected `pfn` after `|` or `^`"
        );
        assert_eq!(
            err("spawn A\nA mmap 0x1000 2G rw\n"),
            "t.scn:2:15: length 0x80000000 is outside the limit 0x0..=0x40000000"
        );
        assert_eq!(
            err("spawn A\nreclaim A 0x1000 0\n"),
            "t.scn:2:18: length 0x0 is outside the limit 0x1..=0x40000000"
        );
        assert_eq!(
            err("spawn A\nA munmap 0x1000 4K = ENOMEN\n").split(',').next().unwrap(),
            "t.scn:2:22: expected a result: 0 or an errno name (ENOMEM"
        );
        assert_eq!(
            err("spawn A\nA munmap 0x1000 4K 0\n").split(',').next().unwrap(),
            "t.scn:2:20: expected `= 0`"
        );
        assert_eq!(
            err("expect maps A 0x2000-0x1000 rw-p\n").split(',').next().unwrap(),
            "t.scn:1:15: expected a VMA range START-END (e.g. 0x7f0000000000-0x7f0000002000)"
        );
        assert_eq!(
            err("expect maps A 0x1000-0x2000 rw-s\n").split(" (").next().unwrap(),
            "t.scn:1:29: expected perms as /proc/PID/maps prints them"
        );
        assert_eq!(
            err("expect maps A 0x1000-0x3000 rw-p 0x2000-0x4000 r--p\n").split(',').next().unwrap(),
            "t.scn:1:34: expected VMAs in address order"
        );
        assert_eq!(err("swap 10K\n"), "t.scn:1:6: swap size 0x2800 is not a multiple of 4K");
        assert_eq!(
            err("swap 200M\nswap 100M\n"),
            "t.scn:2:6: total swap size 0x12c00000 is outside the limit 0x0..=0x10000000"
        );
        assert_eq!(
            err("rcu-grace-period now\n"),
            "t.scn:1:18: expected end of line, found \"now\""
        );
        assert_eq!(
            err("spawn A\nA fly\n").split(" (").next().unwrap(),
            "t.scn:2:3: expected an operation"
        );
        assert_eq!(
            err("expect oops gone\n").split(" (").next().unwrap(),
            "t.scn:1:13: expected an oops kind"
        );
        assert_eq!(
            err("expect A 0x1 type=32\n"),
            "t.scn:1:19: swap type 0x20 is outside the limit 0x0..=0x1f"
        );
    }

    #[test]
    fn binary_and_limits() {
        let e = parse_bytes("b.scn", b"spawn A\nA wr\xffite\n").unwrap_err();
        assert_eq!(e.to_string(), "b.scn:2:5: expected UTF-8 text, found byte 0xff");
        let big = vec![b'#'; (limits::MAX_FILE_BYTES + 1) as usize];
        assert!(matches!(parse_bytes("b.scn", &big), Err(Error::FileTooLarge { .. })));
        let mut many = String::new();
        for i in 0..=limits::MAX_PROCESSES {
            many.push_str(&format!("spawn P{i}\n"));
        }
        assert!(matches!(
            parse(&many),
            Err(Error::TooMany { what: "processes (spawn and fork)", .. })
        ));
        let long = format!("spawn {}\n", "A".repeat(limits::MAX_NAME_CHARS + 1));
        assert!(err(&long).contains("expected a process name"));
        let long_word = format!("spawn A\nA mmap 0x{} 4K rw\n", "f".repeat(100_000));
        assert!(err(&long_word).contains("does not fit in 64 bits"));
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let s = parse("# header\r\n\r\nspawn A   # the parent\r\n\texpect clean\r\n").unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[1].pos, Pos { line: 4, col: 2 });
    }
}
