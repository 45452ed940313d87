//! A tiny safetensors reader for the fixtures' reference.safetensors (no
//! crates): 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets}}`, then the data.

use std::collections::BTreeMap;
use std::path::Path;

/// A minimal JSON value: enough for a safetensors header.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i).copied() {
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value()? else { return Err(format!("object key at byte {}", self.i)) };
                    self.eat(b':')?;
                    let v = self.value()?;
                    m.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("bad object at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("bad array at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let c = *self.s.get(self.i).ok_or("unterminated string")?;
                    self.i += 1;
                    match c {
                        b'"' => return Ok(Json::Str(out)),
                        b'\\' => {
                            let e = *self.s.get(self.i).ok_or("bad escape")?;
                            self.i += 1;
                            match e {
                                b'n' => out.push('\n'),
                                b't' => out.push('\t'),
                                b'r' => out.push('\r'),
                                b'b' => out.push('\u{8}'),
                                b'f' => out.push('\u{c}'),
                                b'u' => {
                                    let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4).ok_or("bad \\u")?)
                                        .map_err(|e| e.to_string())?;
                                    let mut code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                    self.i += 4;
                                    // A surrogate pair: "\ud83d\ude00".
                                    if (0xD800..0xDC00).contains(&code) && self.s[self.i..].starts_with(b"\\u") {
                                        let low =
                                            std::str::from_utf8(self.s.get(self.i + 2..self.i + 6).unwrap_or(b""))
                                                .ok()
                                                .and_then(|h| u32::from_str_radix(h, 16).ok());
                                        if let Some(low @ 0xDC00..0xE000) = low {
                                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                            self.i += 6;
                                        }
                                    }
                                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                }
                                other => out.push(other as char),
                            }
                        }
                        _ => {
                            // Copy a whole UTF-8 sequence.
                            let start = self.i - 1;
                            let mut end = self.i;
                            while end < self.s.len() && (self.s[end] & 0xC0) == 0x80 {
                                end += 1;
                            }
                            out.push_str(std::str::from_utf8(&self.s[start..end]).map_err(|e| e.to_string())?);
                            self.i = end;
                        }
                    }
                }
            }
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                text.parse::<f64>().map(Json::Num).map_err(|_| format!("bad number {text:?} at byte {start}"))
            }
            None => Err("unexpected end of JSON".into()),
        }
    }
}

pub fn parse_json(text: &[u8]) -> Result<Json, String> {
    let mut p = Parser { s: text, i: 0 };
    let v = p.value()?;
    p.ws();
    if p.i != text.len() { Err(format!("trailing data at byte {}", p.i)) } else { Ok(v) }
}

/// One tensor, converted to f64 (floats) or i64 (integers).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
    pub u8: Vec<u8>,
}

pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if raw.len() < 8 {
        return Err("file too short".into());
    }
    let n = u64::from_le_bytes(raw[..8].try_into().unwrap()) as usize;
    let header = parse_json(raw.get(8..8 + n).ok_or("header past the end")?)?;
    let Json::Obj(entries) = header else { return Err("header is not an object".into()) };
    let data = &raw[8 + n..];
    let mut out = BTreeMap::new();
    for (name, t) in entries {
        if name == "__metadata__" {
            continue;
        }
        let Json::Obj(t) = t else { return Err(format!("{name}: not an object")) };
        let Some(Json::Str(dtype)) = t.get("dtype") else { return Err(format!("{name}: no dtype")) };
        let Some(Json::Arr(shape)) = t.get("shape") else { return Err(format!("{name}: no shape")) };
        let Some(Json::Arr(off)) = t.get("data_offsets") else { return Err(format!("{name}: no data_offsets")) };
        let num = |v: &Json| match v {
            Json::Num(x) if *x >= 0.0 => Ok(*x as usize),
            _ => Err(format!("{name}: bad number")),
        };
        let shape: Vec<usize> = shape.iter().map(num).collect::<Result<_, _>>()?;
        let (begin, end) = (num(&off[0])?, num(&off[1])?);
        let bytes = data.get(begin..end).ok_or(format!("{name}: data past the end"))?;
        let count: usize = shape.iter().product();
        let mut t = Tensor { dtype: dtype.clone(), shape, f32: Vec::new(), i64: Vec::new(), u8: Vec::new() };
        match dtype.as_str() {
            "F32" => t.f32 = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            "I64" => t.i64 = bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            "I32" => t.i64 = bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
            "U8" => t.u8 = bytes.to_vec(),
            _ => continue,
        }
        if t.f32.len().max(t.i64.len()).max(t.u8.len()) != count {
            return Err(format!("{name}: {} bytes for shape {:?}", bytes.len(), t.shape));
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// max|got - want| / max|want| (infinite when the lengths differ or a value
/// is not finite).
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &b) in got.iter().zip(want) {
        if !a.is_finite() {
            return f64::INFINITY;
        }
        num = num.max((f64::from(a) - f64::from(b)).abs());
        den = den.max(f64::from(b).abs());
    }
    if den > 0.0 { num / den } else { num }
}

/// The reference tensors the session tests use.
pub struct Reference {
    pub n_images: usize,
    pub image_size: usize,
    pub pixels: Vec<f32>,
    pub ids: Vec<i32>,
    pub vocab: usize,
    pub logits: Vec<f32>,
    pub latents: usize,
    pub dim: usize,
    pub resampler: Vec<f32>,
    pub greedy: Vec<i32>,
    /// Token-id tensors only newer fixtures have (e.g. "beam3_lp0.ids").
    pub optional: BTreeMap<String, Vec<i32>>,
}

impl Reference {
    pub fn load(fixture_dir: &Path) -> Reference {
        let t = read(&fixture_dir.join("reference.safetensors")).unwrap_or_else(|e| panic!("{e}"));
        let get = |k: &str| t.get(k).unwrap_or_else(|| panic!("reference has no {k}"));
        let ids = |k: &str| get(k).i64.iter().map(|&x| i32::try_from(x).unwrap()).collect::<Vec<i32>>();
        let px = get("input.pixels");
        let lg = get("logits");
        let rs = get("resampler.out");
        let mut optional = BTreeMap::new();
        for k in [
            "beam3_lp0.ids",
            "beam3_lp1.ids",
            "greedy_nr2.ids",
            "greedy_rp15.ids",
            "stop.input_ids",
            "stop.greedy.ids",
            "stop.beam3_lp0.ids",
            "stop.beam3_lp1.ids",
        ] {
            if t.contains_key(k) {
                optional.insert(k.to_string(), ids(k));
            }
        }
        Reference {
            n_images: px.shape[1],
            image_size: px.shape[px.shape.len() - 1],
            pixels: px.f32.clone(),
            ids: ids("input.input_ids"),
            vocab: lg.shape[lg.shape.len() - 1],
            logits: lg.f32.clone(),
            latents: rs.shape[rs.shape.len() - 2],
            dim: rs.shape[rs.shape.len() - 1],
            resampler: rs.f32.clone(),
            greedy: ids("greedy.ids"),
            optional,
        }
    }

    pub fn image_floats(&self) -> usize {
        3 * self.image_size * self.image_size
    }

    /// Logits rows [begin, end).
    pub fn rows(&self, begin: usize, end: usize) -> &[f32] {
        &self.logits[begin * self.vocab..end * self.vocab]
    }
}
