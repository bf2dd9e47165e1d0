//! Reads fuzzer-chosen cut points from the head of an input, so the fuzzer decides how a body is chunked.

/// Most cuts one input may ask for.
const MAX_CUTS: usize = 32;

/// Splits `data` into `(cuts, payload)`: byte 0 is how many cuts, then two bytes each (big endian,
/// taken modulo the payload's length plus one). The cuts come back sorted.
pub(super) fn split_cuts(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let count = usize::from(count).min(MAX_CUTS).min(rest.len() / 2);
    let (encoded, payload) = rest.split_at(count * 2);
    let mut cuts: Vec<usize> = encoded
        .chunks_exact(2)
        .map(|pair| usize::from(u16::from_be_bytes([pair[0], pair[1]])) % (payload.len() + 1))
        .collect();
    cuts.sort_unstable();
    (cuts, payload)
}

/// `payload` cut at `cuts` (sorted, within bounds): the pieces in order, empty ones included.
pub(super) fn pieces<'a>(payload: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &cut in cuts {
        pieces.push(&payload[from..cut]);
        from = cut;
    }
    pieces.push(&payload[from..]);
    pieces
}
