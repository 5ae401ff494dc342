//! Splitting one line of scenario text into tokens.
//!
//! Words are maximal runs of characters that are neither white space nor one
//! of the punctuation characters `[ ] = | ^ < >`; each punctuation character is
//! a token of its own, so `type=0`, `type = 0` and `[seed]` all lex the same
//! way. `#` starts a comment wherever it appears. Columns count characters,
//! from 1, so a message points where an editor's cursor would.

use crate::ast::Pos;

/// What a token is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TokenKind {
    /// A run of non-space, non-punctuation characters.
    Word,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `=`
    Equals,
    /// `|`
    Pipe,
    /// `^`
    Caret,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One token of a line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Token<'a> {
    /// Its kind.
    pub kind: TokenKind,
    /// Its text, borrowed from the line.
    pub text: &'a str,
    /// Where it starts.
    pub pos: Pos,
}

fn punct(c: char) -> Option<TokenKind> {
    match c {
        '[' => Some(TokenKind::LBracket),
        ']' => Some(TokenKind::RBracket),
        '=' => Some(TokenKind::Equals),
        '|' => Some(TokenKind::Pipe),
        '^' => Some(TokenKind::Caret),
        '<' => Some(TokenKind::Less),
        '>' => Some(TokenKind::Greater),
        _ => None,
    }
}

/// The tokens of `line` (line number `line_no`), comments dropped.
///
/// Never fails: any character that is not white space or punctuation is part
/// of a word, and the parser says what it expected instead.
pub fn tokenize(line: &str, line_no: u32) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut word_start: Option<(usize, u32)> = None;
    let mut col: u32 = 0;
    for (byte, c) in line.char_indices() {
        col = col.saturating_add(1);
        let is_space = c.is_whitespace();
        let p = punct(c);
        if c == '#' || is_space || p.is_some() {
            if let Some((start, start_col)) = word_start.take() {
                tokens.push(Token {
                    kind: TokenKind::Word,
                    text: &line[start..byte],
                    pos: Pos { line: line_no, col: start_col },
                });
            }
            if c == '#' {
                return tokens;
            }
            if let Some(kind) = p {
                tokens.push(Token {
                    kind,
                    text: &line[byte..byte + c.len_utf8()],
                    pos: Pos { line: line_no, col },
                });
            }
        } else if word_start.is_none() {
            word_start = Some((byte, col));
        }
    }
    if let Some((start, start_col)) = word_start {
        tokens.push(Token {
            kind: TokenKind::Word,
            text: &line[start..],
            pos: Pos { line: line_no, col: start_col },
        });
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<(&str, u32)> {
        tokenize(line, 1).into_iter().map(|t| (t.text, t.pos.col)).collect()
    }

    #[test]
    fn words_punctuation_and_columns() {
        assert_eq!(
            texts("expect [seed 6.18] A 0x10 pte=0x67|pfn # c"),
            vec![
                ("expect", 1),
                ("[", 8),
                ("seed", 9),
                ("6.18", 14),
                ("]", 18),
                ("A", 20),
                ("0x10", 22),
                ("pte", 27),
                ("=", 30),
                ("0x67", 31),
                ("|", 35),
                ("pfn", 36),
            ]
        );
    }

    #[test]
    fn comment_inside_a_word_ends_it() {
        assert_eq!(texts("A write 0x10#x"), vec![("A", 1), ("write", 3), ("0x10", 9)]);
        assert!(texts("# all comment").is_empty());
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(texts("é x"), vec![("é", 1), ("x", 3)]);
    }
}
