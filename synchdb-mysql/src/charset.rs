//! Text in MySQL character sets to UTF-8.
//!
//! Strict: bytes that are not valid in the column's character set are an
//! error, never replaced. MySQL's `latin1` is Windows-1252 (with the five
//! unassigned bytes 0x81, 0x8D, 0x8F, 0x90, 0x9D mapped to the C1 controls
//! of the same code), which is what `encoding_rs`' windows-1252 decoder does.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// How one MySQL character set decodes.
enum CsDecoder {
    Utf8,
    Ascii,
    /// An `encoding_rs` encoding, strict.
    Whatwg(&'static Encoding),
    /// ISO-8859-9 (MySQL `latin5`): windows-1254 except 0x80..=0x9F, which are C1 controls.
    Latin5,
    Utf32Be,
    /// A single-byte character set read from the server (`charset_tables`).
    Table(&'static [u16; 256]),
}

fn decoder(charset: &str) -> Option<CsDecoder> {
    use encoding_rs::{
        BIG5, EUC_JP, EUC_KR, GB18030, GBK, IBM866, ISO_8859_13, ISO_8859_2, ISO_8859_7, ISO_8859_8, KOI8_R,
        KOI8_U, MACINTOSH, SHIFT_JIS, UTF_16BE, UTF_16LE, WINDOWS_1250, WINDOWS_1251, WINDOWS_1252,
        WINDOWS_1256, WINDOWS_1257, WINDOWS_874,
    };
    Some(match charset.to_ascii_lowercase().as_str() {
        // `binary` on a text-like column (ENUM/SET/CHAR ... CHARACTER SET binary):
        // bytes, stored as text when they are UTF-8, an error otherwise.
        "utf8" | "utf8mb3" | "utf8mb4" | "binary" => CsDecoder::Utf8,
        "ascii" => CsDecoder::Ascii,
        "latin1" | "cp1252" => CsDecoder::Whatwg(WINDOWS_1252),
        "latin2" => CsDecoder::Whatwg(ISO_8859_2),
        "latin5" => CsDecoder::Latin5,
        "latin7" => CsDecoder::Whatwg(ISO_8859_13),
        "greek" => CsDecoder::Whatwg(ISO_8859_7),
        "hebrew" => CsDecoder::Whatwg(ISO_8859_8),
        "cp1250" => CsDecoder::Whatwg(WINDOWS_1250),
        "cp1251" => CsDecoder::Whatwg(WINDOWS_1251),
        "cp1256" => CsDecoder::Whatwg(WINDOWS_1256),
        "cp1257" => CsDecoder::Whatwg(WINDOWS_1257),
        "cp866" => CsDecoder::Whatwg(IBM866),
        "koi8r" => CsDecoder::Whatwg(KOI8_R),
        "koi8u" => CsDecoder::Whatwg(KOI8_U),
        "macroman" => CsDecoder::Whatwg(MACINTOSH),
        "tis620" => CsDecoder::Whatwg(WINDOWS_874),
        "sjis" | "cp932" => CsDecoder::Whatwg(SHIFT_JIS),
        "ujis" | "eucjpms" => CsDecoder::Whatwg(EUC_JP),
        "gbk" | "gb2312" => CsDecoder::Whatwg(GBK),
        "gb18030" => CsDecoder::Whatwg(GB18030),
        "big5" => CsDecoder::Whatwg(BIG5),
        "euckr" => CsDecoder::Whatwg(EUC_KR),
        "ucs2" | "utf16" => CsDecoder::Whatwg(UTF_16BE),
        "utf16le" => CsDecoder::Whatwg(UTF_16LE),
        "utf32" => CsDecoder::Utf32Be,
        "armscii8" => CsDecoder::Table(&crate::charset_tables::ARMSCII8),
        "cp850" => CsDecoder::Table(&crate::charset_tables::CP850),
        "cp852" => CsDecoder::Table(&crate::charset_tables::CP852),
        "dec8" => CsDecoder::Table(&crate::charset_tables::DEC8),
        "geostd8" => CsDecoder::Table(&crate::charset_tables::GEOSTD8),
        "hp8" => CsDecoder::Table(&crate::charset_tables::HP8),
        "keybcs2" => CsDecoder::Table(&crate::charset_tables::KEYBCS2),
        "macce" => CsDecoder::Table(&crate::charset_tables::MACCE),
        "swe7" => CsDecoder::Table(&crate::charset_tables::SWE7),
        _ => return None,
    })
}

/// Why text did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CharsetError {
    /// The character set has no decoder here.
    Unsupported(String),
    /// The bytes are not valid in the character set.
    Invalid(String),
}

/// Decode `bytes` in MySQL character set `charset` to UTF-8.
pub(crate) fn decode_text(charset: &str, bytes: Vec<u8>) -> Result<String, CharsetError> {
    let invalid = || CharsetError::Invalid(charset.to_string());
    match decoder(charset).ok_or_else(|| CharsetError::Unsupported(charset.to_string()))? {
        CsDecoder::Utf8 => String::from_utf8(bytes).map_err(|_| invalid()),
        CsDecoder::Ascii => {
            if bytes.is_ascii() {
                String::from_utf8(bytes).map_err(|_| invalid())
            } else {
                Err(invalid())
            }
        }
        CsDecoder::Whatwg(enc) => {
            if bytes.is_ascii() && enc.is_ascii_compatible() {
                return String::from_utf8(bytes).map_err(|_| invalid());
            }
            match enc.decode_without_bom_handling_and_without_replacement(&bytes) {
                Some(Cow::Borrowed(s)) => Ok(s.to_string()),
                Some(Cow::Owned(s)) => Ok(s),
                None => Err(invalid()),
            }
        }
        CsDecoder::Latin5 => {
            let mut out = String::with_capacity(bytes.len());
            for &b in &bytes {
                if (0x80..=0x9F).contains(&b) {
                    out.push(char::from(b));
                } else {
                    let one = [b];
                    let s = encoding_rs::WINDOWS_1254
                        .decode_without_bom_handling_and_without_replacement(&one)
                        .ok_or_else(invalid)?;
                    out.push_str(&s);
                }
            }
            Ok(out)
        }
        CsDecoder::Table(table) => bytes
            .iter()
            .map(|&b| match table[b as usize] {
                crate::charset_tables::NONE => Err(invalid()),
                cp => char::from_u32(cp as u32).ok_or_else(invalid),
            })
            .collect(),
        CsDecoder::Utf32Be => {
            if bytes.len() % 4 != 0 {
                return Err(invalid());
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).ok_or_else(invalid))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252() {
        assert_eq!(decode_text("latin1", vec![0xE9, 0x80, 0x81]).unwrap(), "é€\u{81}");
        assert_eq!(decode_text("latin1", b"plain".to_vec()).unwrap(), "plain");
    }

    #[test]
    fn utf8_family_is_checked() {
        assert_eq!(decode_text("utf8mb4", "é€😀".as_bytes().to_vec()).unwrap(), "é€😀");
        assert_eq!(decode_text("utf8mb4", vec![0xFF]), Err(CharsetError::Invalid("utf8mb4".into())));
        assert!(decode_text("ascii", vec![0xC3, 0xA9]).is_err());
    }

    #[test]
    fn wide_charsets() {
        assert_eq!(decode_text("ucs2", vec![0x00, 0xE9, 0x20, 0xAC]).unwrap(), "é€");
        assert_eq!(decode_text("utf16", vec![0xD8, 0x3D, 0xDE, 0x00]).unwrap(), "😀");
        assert_eq!(decode_text("utf16le", vec![0xE9, 0x00]).unwrap(), "é");
        assert_eq!(decode_text("utf32", vec![0, 1, 0xF6, 0x00]).unwrap(), "😀");
        assert!(decode_text("utf32", vec![0, 0x11, 0, 0]).is_err());
    }

    #[test]
    fn others_and_unsupported() {
        assert_eq!(decode_text("cp1251", vec![0xC0]).unwrap(), "А");
        assert_eq!(decode_text("latin5", vec![0xD0, 0x80]).unwrap(), "Ğ\u{80}");
        assert_eq!(decode_text("sjis", vec![0x82, 0xA0]).unwrap(), "あ");
        assert_eq!(decode_text("hp8", vec![0x41, 0xC8]).unwrap(), "Aà");
        assert_eq!(decode_text("swe7", vec![0x5B]).unwrap(), "Ä");
        assert_eq!(decode_text("filename", vec![0x41]), Err(CharsetError::Unsupported("filename".into())));
        assert_eq!(decode_text("LATIN1", vec![0xE9]).unwrap(), "é");
    }
}
