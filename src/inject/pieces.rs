//! Finding pieces of secrets: runs of at least half a secret form (and at least
//! [`MIN_PIECE`](super::forms::MIN_PIECE) bytes) anywhere in a response.
//!
//! Every run that long contains one of the form's 8-byte grams at a position the
//! scan samples: the scan reads 8 bytes every `step` positions of the stream
//! (`step` = shortest run − 7) and looks them up in a small hashed table of every
//! gram of every form. A hit is checked against the form's bytes and extended
//! both ways to the whole aligned run. The table holds gram positions and a few
//! hash bits, never secret bytes; those stay in the zeroized forms.

use super::forms::SecretForm;
use std::sync::Arc;

/// Length of a gram.
const GRAM: usize = 8;

/// A run of a form found in a haystack: `start..end`, replaced by `form`'s
/// replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First byte of the run.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
    /// Index of the form in [`PieceIndex::forms`].
    pub form: usize,
}

/// Where a gram sits: which form, at which offset.
#[derive(Clone, Copy, Debug)]
struct GramAt {
    form: u32,
    offset: u32,
}

/// The gram table of a set of forms.
pub struct PieceIndex {
    forms: Vec<Arc<SecretForm>>,
    /// Shortest run replaced, per form.
    shortest: Vec<usize>,
    /// One bit per bucket: whether any gram hashes there.
    filter: Vec<u64>,
    /// `grams[starts[b]..starts[b + 1]]` hash to bucket `b`.
    starts: Vec<u32>,
    grams: Vec<GramAt>,
    bits: u32,
    /// Distance between sampled positions.
    step: usize,
    longest: usize,
}

impl std::fmt::Debug for PieceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceIndex")
            .field("forms", &self.forms.len())
            .field("step", &self.step)
            .finish()
    }
}

fn bucket(gram: u64, bits: u32) -> usize {
    (gram.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

fn gram_at(hay: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; GRAM];
    bytes.copy_from_slice(&hay[at..at + GRAM]);
    u64::from_le_bytes(bytes)
}

impl PieceIndex {
    /// Whether `form` belongs in a piece index: pieces count for it, and its
    /// shortest piece is shorter than the form (otherwise only the whole counts).
    pub fn takes(form: &SecretForm) -> bool {
        let len = form.echo().len();
        form.kind() == super::forms::Echo::Pieces
            && form.shortest_piece() >= GRAM
            && form.shortest_piece() < len
            && u32::try_from(len).is_ok()
    }

    /// The index of `forms` (each must pass [`Self::takes`]); `None` if empty.
    pub fn new(forms: Vec<Arc<SecretForm>>) -> Option<Self> {
        let forms: Vec<_> = forms.into_iter().filter(|f| Self::takes(f)).collect();
        let shortest: Vec<usize> = forms.iter().map(|f| f.shortest_piece()).collect();
        let step = shortest.iter().min()? - GRAM + 1;
        let longest = forms.iter().map(|f| f.echo().len()).max()?;
        let total: usize = forms.iter().map(|f| f.echo().len() - GRAM + 1).sum();
        let bits = (total * 8)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(10, 20);
        let buckets = 1usize << bits;
        let mut counts = vec![0u32; buckets + 1];
        let mut placed = Vec::with_capacity(total);
        for (f, form) in forms.iter().enumerate() {
            let echo = form.echo();
            for offset in 0..=echo.len() - GRAM {
                let b = bucket(gram_at(echo, offset), bits);
                counts[b + 1] += 1;
                placed.push((b, f as u32, offset as u32));
            }
        }
        for b in 0..buckets {
            counts[b + 1] += counts[b];
        }
        let starts = counts.clone();
        let mut next = counts;
        let mut grams = vec![GramAt { form: 0, offset: 0 }; placed.len()];
        let mut filter = vec![0u64; buckets.div_ceil(64)];
        for (b, form, offset) in placed {
            grams[next[b] as usize] = GramAt { form, offset };
            next[b] += 1;
            filter[b >> 6] |= 1 << (b & 63);
        }
        Some(Self {
            forms,
            shortest,
            filter,
            starts,
            grams,
            bits,
            step,
            longest,
        })
    }

    /// The forms, in the order [`Run::form`] refers to.
    pub fn forms(&self) -> &[Arc<SecretForm>] {
        &self.forms
    }

    /// Length of the longest form: a stream keeps `longest - 1` bytes back.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// The next run in `hay[lo..hi]`, looked for far enough to find every run
    /// that starts before `starts_before` (one found may start later). Positions
    /// are sampled where `base + position` is a multiple of the step, so the runs
    /// found do not depend on how a stream was cut into chunks. Of the runs a
    /// sampled position belongs to, the one that starts first (then the longest)
    /// wins.
    pub fn next_run(
        &self,
        hay: &[u8],
        lo: usize,
        hi: usize,
        base: u64,
        starts_before: usize,
    ) -> Option<Run> {
        // A run's first sampled position is less than a step into it.
        let until = starts_before.saturating_add(self.step - 1);
        let step = self.step as u64;
        let first = lo + ((step - (base + lo as u64) % step) % step) as usize;
        let mut t = first;
        while t + GRAM <= hi && t < until {
            let b = bucket(gram_at(hay, t), self.bits);
            if self.filter[b >> 6] & (1 << (b & 63)) != 0 {
                if let Some(run) = self.run_at(hay, lo, hi, t, b) {
                    return Some(run);
                }
            }
            t += self.step;
        }
        None
    }

    /// The best run through the sampled position `t`, if any is long enough.
    fn run_at(&self, hay: &[u8], lo: usize, hi: usize, t: usize, b: usize) -> Option<Run> {
        let window = &hay[t..t + GRAM];
        let mut best: Option<Run> = None;
        let candidates = &self.grams[self.starts[b] as usize..self.starts[b + 1] as usize];
        for at in candidates {
            let (f, offset) = (at.form as usize, at.offset as usize);
            let echo = self.forms[f].echo();
            if &echo[offset..offset + GRAM] != window {
                continue;
            }
            let left = hay[lo..t]
                .iter()
                .rev()
                .zip(echo[..offset].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let right = hay[t + GRAM..hi]
                .iter()
                .zip(&echo[offset + GRAM..])
                .take_while(|(a, b)| a == b)
                .count();
            let run = Run {
                start: t - left,
                end: t + GRAM + right,
                form: f,
            };
            if run.end - run.start < self.shortest[f] {
                continue;
            }
            let better = best.is_none_or(|b| {
                (run.start, std::cmp::Reverse(run.end)) < (b.start, std::cmp::Reverse(b.end))
            });
            if better {
                best = Some(run);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::forms::Echo;
    use super::*;

    const SECRET: &[u8] = b"ghs_0123456789abcdefghijABCDEFGHIJ012345";

    fn index() -> PieceIndex {
        PieceIndex::new(vec![Arc::new(SecretForm::new(
            SECRET.to_vec(),
            b"__T__".to_vec(),
            Echo::Pieces,
        ))])
        .unwrap()
    }

    fn runs(hay: &[u8]) -> Vec<(usize, usize)> {
        let index = index();
        let mut found = Vec::new();
        let mut lo = 0;
        while let Some(run) = index.next_run(hay, lo, hay.len(), 0, hay.len()) {
            found.push((run.start, run.end));
            lo = run.end;
        }
        found
    }

    #[test]
    fn half_or_more_is_a_run_and_less_is_not() {
        let mut hay = b"xx".to_vec();
        hay.extend_from_slice(&SECRET[..20]);
        hay.extend_from_slice(b" -- ");
        hay.extend_from_slice(&SECRET[21..]);
        hay.extend_from_slice(b" -- ");
        hay.extend_from_slice(&SECRET[5..25]);
        assert_eq!(runs(&hay), vec![(2, 22), (49, 69)]);
        assert_eq!(runs(SECRET), vec![(0, 40)]);
    }

    #[test]
    fn short_or_whole_only_forms_are_not_indexed() {
        let short = SecretForm::new(b"abcdefghijkl".to_vec(), b"__T__".to_vec(), Echo::Pieces);
        let whole = SecretForm::new(SECRET.to_vec(), b"x".to_vec(), Echo::Whole);
        assert!(!PieceIndex::takes(&short));
        assert!(!PieceIndex::takes(&whole));
        assert!(PieceIndex::new(vec![Arc::new(short), Arc::new(whole)]).is_none());
    }
}
