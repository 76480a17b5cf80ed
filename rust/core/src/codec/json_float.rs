//! FP32 numbers from JSON text: the decoder's hot loop for the commonest tensor.
//!
//! Shortest-form FP32 text (`-0.52758026`) has 8 or 9 significant digits, past fast-float's own
//! f32 fast path (7 digits), and its length and sign vary from one element to the next. So the
//! common form, a plain decimal directly followed by `,` or `]`, is read 16 bytes at a time:
//! - SIMD compares (through `wide`: SSE2 or NEON, else scalar) find the separator, the point and
//!   any stray byte in one step. Where the number ends, which the next element's read waits
//!   for, is then a few instructions from the load, and the rest of the work overlaps the next
//!   element instead of sitting on one long chain of dependent steps.
//! - The digits are converted all 16 at once, by multiply-adds in SSE2 on x86_64 and by integer
//!   multiplies eight at a time (SWAR) elsewhere: no per-digit loop.
//! - The value goes through f64 with a check that it is not near an f32 rounding boundary
//!   (Clinger's fast path, widened; see [`narrow`]).
//!
//! The same form 16 to 31 bytes long (FP32 values printed as f64) is read in two blocks, out of
//! line, its value taken from its leading 16 digits. Anything else (an exponent, a longer number, text near the end of the body) takes a
//! byte-at-a-time reader of the same grammar, and what none can round exactly goes to
//! fast-float, as does every error.

use wide::u8x16;

/// Parses the number at the start of `text` as an FP32 with the number of bytes it took, or
/// `None` when fast-float has to decide (the caller's fallback, which also reports errors).
#[inline(always)]
pub(super) fn fast_f32(text: &[u8]) -> Option<(f32, usize)> {
    by_block(text).or_else(|| by_long_block_or_bytes(text))
}

/// The readers for the rarer forms, out of line: the loop around the common one stays compact
/// (inlining this chain there cost 10 % on short-form text).
#[inline(never)]
fn by_long_block_or_bytes(text: &[u8]) -> Option<(f32, usize)> {
    by_long_block(text).or_else(|| by_bytes(text))
}

/// `-?d+\.d+` directly followed by `,` or `]` within the first 16 bytes of `text`.
#[inline(always)]
fn by_block(text: &[u8]) -> Option<(f32, usize)> {
    let bytes: [u8; 16] = text.get(..16)?.try_into().ok()?;
    let word = u128::from_le_bytes(bytes);
    let (separators, points, not_digits) = classify(bytes);
    // Read off the word: indexing `bytes` again made LLVM split the 16-byte load.
    #[allow(clippy::cast_possible_truncation)] // the first byte
    let negative = word as u8 == b'-';
    let (end, point) = locate(
        separators.into(),
        points.into(),
        not_digits.into(),
        negative,
        16,
    )?;
    // Close the gap of the point, and clear the sign and everything after the last digit: the
    // 16 bytes then spell the number's digits followed by zeros, a 16-digit integer with 16 -
    // point digits after the point.
    let values = word ^ ZEROS;
    let tail = BELOW[end - 1] & !(u128::from(negative) * 0xff);
    let mantissa = sixteen_digits(values, BELOW[point], tail);
    #[allow(clippy::cast_possible_wrap, clippy::cast_precision_loss)] // below 10^16; see `narrow`
    let wide = mantissa as i64 as f64 * NEG_POW10[16 - point];
    Some((narrow(wide, negative, EXACT_MARGIN)?, end))
}

/// The same form 16 to 31 bytes long, with the point in the first 16: FP32 values printed as
/// f64, 17 significant digits (`-0.4265716075897217`), as Python clients send them (`tolist()`
/// in tritonclient and KServe's client). An f32 needs far fewer digits than that, so the value
/// is taken from the first 16 digit slots and the rest is only checked and skipped; see
/// [`TRUNCATED_MARGIN`].
#[inline(always)]
fn by_long_block(text: &[u8]) -> Option<(f32, usize)> {
    let first: [u8; 16] = text.get(..16)?.try_into().ok()?;
    let second: [u8; 16] = text.get(16..32)?.try_into().ok()?;
    let (separators, points, first_stray) = classify(first);
    let (later_separators, _, second_stray) = classify(second);
    let negative = first[0] == b'-';
    let (end, point) = locate(
        u64::from(separators & 0xffff) | u64::from(later_separators) << 16,
        points.into(),
        u64::from(first_stray) | u64::from(second_stray) << 16,
        negative,
        32,
    )?;
    if end < 16 {
        return None;
    }
    // The first block with the point's gap closed, whose last slot is byte 16 of the text (a
    // digit when the number goes past it): the number's leading 16 digit slots.
    let sign = u128::from(negative) * 0xff;
    let values = u128::from_le_bytes(first) ^ ZEROS;
    let slot_15 = if end > 16 { second[0] - b'0' } else { 0 };
    let leading = sixteen_digits(values, BELOW[point], BELOW[16] & !sign) + u64::from(slot_15);
    if leading < TRUNCATED_MIN {
        return None;
    }
    // Below 10^16; see `narrow` for the roundings and `TRUNCATED_MARGIN` for the digits dropped.
    #[allow(clippy::cast_possible_wrap, clippy::cast_precision_loss)]
    let wide = leading as i64 as f64 * NEG_POW10[16 - point];
    Some((narrow(wide, negative, TRUNCATED_MARGIN)?, end))
}

/// The fewest leading digits, as an integer, from which [`by_long_block`] rounds: 2^40 (13 or
/// more significant digits).
const TRUNCATED_MIN: u64 = 1 << 40;

/// How near (in f64 ulps) an f32 rounding boundary a value read from its leading digits may
/// not be. The digits dropped make the value short by less than one unit of the last digit
/// kept, under 2^-40 of it (the leading digits are at least 2^40), which is under 2^13 f64
/// ulps; `narrow`'s own 8 ulps cover the roundings. About 3 values in 100,000 fall this near a
/// boundary and go to fast-float with all their digits.
const TRUNCATED_MARGIN: i64 = (1 << 13) + 8;

/// How near (in f64 ulps) an f32 rounding boundary a value read from all its digits may not be;
/// see [`narrow`].
const EXACT_MARGIN: i64 = 8;

/// Where the number in a window of text ends (its separator) and where its point is, from the
/// window's byte masks (bit n for byte n; `separators` has bit `window` set, past the window).
/// `None` unless the separator is in the window, and the bytes from the sign to it are digits
/// and a single point with digits on both sides.
#[inline(always)]
fn locate(
    separators: u64,
    points: u64,
    not_digits: u64,
    negative: bool,
    window: usize,
) -> Option<(usize, usize)> {
    let end = separators.trailing_zeros() as usize;
    let start = usize::from(negative);
    let number = ((1u64 << end) - 1) & !((1u64 << start) - 1);
    let point_bit = points & number;
    if end == window || not_digits & number != point_bit || !point_bit.is_power_of_two() {
        return None;
    }
    let point = point_bit.trailing_zeros() as usize;
    if point == start || point + 1 == end {
        return None;
    }
    Some((end, point))
}

/// Where in 16 bytes of text the separators (`,` `]`), the points and the non-digits are: one
/// bit per byte, the first byte lowest. The separators get a 17th bit, so that `trailing_zeros`
/// gives 16 when there is none.
#[inline(always)]
fn classify(bytes: [u8; 16]) -> (u32, u32, u32) {
    let block = u8x16::new(bytes);
    let mask = |bytes: u8x16| bytes.move_mask().cast_unsigned();
    let separators = block.cmp_eq(u8x16::splat(b',')) | block.cmp_eq(u8x16::splat(b']'));
    let values = block - u8x16::splat(b'0');
    // Digits are the bytes below 10 once '0' is taken away (anything else wrapped around).
    let digits = values.min(u8x16::splat(9)).cmp_eq(values);
    (
        mask(separators) | 1 << 16,
        mask(block.cmp_eq(u8x16::splat(b'.'))),
        !mask(digits) & 0xffff,
    )
}

/// Sixteen `'0'` bytes: xor-ed with text, digits become their values.
const ZEROS: u128 = u128::from_le_bytes([b'0'; 16]);

/// `BELOW[n]` has the low `n` bytes set.
const BELOW: [u128; 17] = {
    let mut table = [0; 17];
    let mut n = 1;
    while n < 17 {
        table[n] = u128::MAX >> (128 - 8 * n);
        n += 1;
    }
    table
};

/// The 16-digit integer in `values` (digit values 0 to 9, the first byte the most significant)
/// once the byte at the point is taken out: bytes in `keep` stay, the others take the value of
/// the byte after them; then only the bytes in `tail` count.
#[inline(always)]
fn sixteen_digits(values: u128, keep: u128, tail: u128) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: the build targets SSE2 (part of the x86_64 baseline: every x86_64 CPU has it).
    #[allow(unsafe_code)]
    return unsafe { sixteen_digits_sse2(values, keep, tail) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    sixteen_digits_swar(values, keep, tail)
}

/// [`sixteen_digits`] in SSE2: the bytes widen to 16-bit lanes and three multiply-adds
/// (`pmaddwd`) fold digit pairs, quads and octets; 10 % faster decoding than the SWAR form,
/// whose u128 shifts and multiplies take twice the instructions.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
fn sixteen_digits_sse2(values: u128, keep: u128, tail: u128) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cvtsi128_si64, _mm_madd_epi16, _mm_or_si128,
        _mm_packs_epi32, _mm_set_epi16, _mm_set_epi64x, _mm_setzero_si128, _mm_srli_si128,
        _mm_unpackhi_epi8, _mm_unpacklo_epi8,
    };
    let vector = |bytes: u128| -> __m128i { _mm_set_epi64x((bytes >> 64) as i64, bytes as i64) };
    let (values, keep) = (vector(values), vector(keep));
    let next = _mm_srli_si128::<1>(values);
    let joined = _mm_or_si128(_mm_and_si128(values, keep), _mm_andnot_si128(keep, next));
    let digits = _mm_and_si128(joined, vector(tail));
    // Weights for a lane pair: the first lane is the more significant.
    let weights = |high: i16| _mm_set_epi16(1, high, 1, high, 1, high, 1, high);
    let zero = _mm_setzero_si128();
    let pairs = _mm_packs_epi32(
        _mm_madd_epi16(_mm_unpacklo_epi8(digits, zero), weights(10)),
        _mm_madd_epi16(_mm_unpackhi_epi8(digits, zero), weights(10)),
    );
    let quads = _mm_madd_epi16(pairs, weights(100));
    let octets = _mm_madd_epi16(_mm_packs_epi32(quads, quads), weights(10_000));
    // The first two 32-bit lanes: the high and the low eight digits.
    let both = _mm_cvtsi128_si64(octets) as u64;
    (both & 0xffff_ffff) * 100_000_000 + (both >> 32)
}

/// [`sixteen_digits`] in plain integer arithmetic, for targets without SSE2 (and to check the
/// SSE2 form against).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn sixteen_digits_swar(values: u128, keep: u128, tail: u128) -> u64 {
    let digits = ((values & keep) | ((values >> 8) & !keep)) & tail;
    #[allow(clippy::cast_possible_truncation)] // the two halves of the 16 digits
    let (high, low) = (digits as u64, (digits >> 64) as u64);
    eight_digits(high) * 100_000_000 + eight_digits(low)
}

/// The value of eight digit bytes (0 to 9 each, the first the most significant): pairs, then
/// quads, then the whole, each step one multiply (the SWAR method of simdjson and fast_float).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn eight_digits(digits: u64) -> u64 {
    const LOW_BYTES: u64 = 0x0000_00FF_0000_00FF;
    const HUNDRED_AND_MILLION: u64 = 100 + (1_000_000 << 32);
    const ONE_AND_TEN_THOUSAND: u64 = 1 + (10_000 << 32);
    let pairs = digits * 10 + (digits >> 8);
    let low = (pairs & LOW_BYTES).wrapping_mul(HUNDRED_AND_MILLION);
    let high = ((pairs >> 16) & LOW_BYTES).wrapping_mul(ONE_AND_TEN_THOUSAND);
    low.wrapping_add(high) >> 32
}

/// The same grammar one byte at a time, with an optional exponent: at most 19 digits and a
/// decimal exponent from -32 to 22.
#[inline(always)]
fn by_bytes(text: &[u8]) -> Option<(f32, usize)> {
    let negative = text.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut mantissa = 0u64;
    let mut digits = 0usize;
    let mut take_digits = |i: &mut usize| -> Option<usize> {
        let start = *i;
        while let Some(&d) = text.get(*i).filter(|d| d.is_ascii_digit()) {
            digits += 1;
            if digits > 19 {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(d - b'0');
            *i += 1;
        }
        Some(*i - start)
    };
    if take_digits(&mut i)? == 0 {
        return None;
    }
    let mut exponent = 0i32;
    if text.get(i) == Some(&b'.') {
        i += 1;
        let fraction = take_digits(&mut i)?;
        if fraction == 0 {
            return None;
        }
        exponent = -i32::try_from(fraction).ok()?;
    }
    if let Some(b'e' | b'E') = text.get(i) {
        i += 1;
        let sign = match text.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let start = i;
        let mut value = 0i32;
        while let Some(&d) = text.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start == 3 {
                return None;
            }
            value = value * 10 + i32::from(d - b'0');
            i += 1;
        }
        if i == start {
            return None;
        }
        exponent += sign * value;
    }
    Some((round(mantissa, exponent, negative)?, i))
}

/// Exact powers of ten in f64 (10^22 is the largest).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The f64 nearest to each negative power of ten, 10^-0 to 10^-32.
const NEG_POW10: [f64; 33] = [
    1e-0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22, 1e-23, 1e-24, 1e-25, 1e-26, 1e-27,
    1e-28, 1e-29, 1e-30, 1e-31, 1e-32,
];
/// `±mantissa × 10^exponent` rounded to f32 through f64, or `None` when that could round
/// differently from a correctly rounded parse (Clinger's fast path, widened). At most three
/// roundings happen, each within half an f64 ulp: the mantissa (exact up to 2^53), 10^-k (10^k
/// is exact up to 10^22), and the product; see [`narrow`]. With the exponent between -32 and 22
/// no value is near f32's subnormals, where an f32 rounding boundary would sit elsewhere.
#[inline(always)]
fn round(mantissa: u64, exponent: i32, negative: bool) -> Option<f32> {
    let power = usize::try_from(exponent.unsigned_abs()).ok()?;
    #[allow(clippy::cast_precision_loss)] // one of the roundings counted above
    let mantissa = i64::try_from(mantissa).ok()? as f64;
    let wide = if exponent >= 0 {
        mantissa * *POW10.get(power)?
    } else {
        mantissa * *NEG_POW10.get(power)?
    };
    narrow(wide, negative, EXACT_MARGIN)
}

/// `±wide` rounded to f32, or `None` when `wide` lies within `margin` f64 ulps of an f32
/// rounding boundary (a midpoint between two f32s, which an f64 can hold exactly). A `wide`
/// read from all of a number's digits is one product, whose factors and result were each
/// rounded at most once: within 2 ulps of the true value, so [`EXACT_MARGIN`] (8) covers it.
/// Rounding it to f32 then gives the correctly rounded f32 wherever no boundary is that close.
#[inline(always)]
fn narrow(wide: f64, negative: bool, margin: i64) -> Option<f32> {
    // Below f32's 24 bits an f64 keeps 29 more: a midpoint is exactly 1 then zeros there.
    let below = i64::try_from(wide.to_bits() & ((1 << 29) - 1)).ok()?;
    if (below - (1 << 28)).abs() <= margin {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // the rounding to f32 is the point
    let narrow = wide as f32;
    // The sign as a bit, not a branch: it flips at random in real tensors.
    Some(f32::from_bits(narrow.to_bits() | u32::from(negative) << 31))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::{
        BELOW, by_block, by_long_block, classify, fast_f32, sixteen_digits, sixteen_digits_swar,
    };

    /// fast-float parses straight to f32, correctly rounded: the reference.
    fn reference(text: &str) -> f32 {
        fast_float2::parse(text).unwrap()
    }

    /// `text` as an element in the middle of a long array: room for the 16- and 32-byte reads.
    fn padded(text: &str) -> String {
        format!("{text},12345678,12345678,12345678,12345678]")
    }

    /// Checks `text` alone (the byte reader: too near the end for a block), followed by a short
    /// tail, and in the middle of an array (the block reader, when it applies).
    fn same(text: &str) {
        for whole in [text.to_owned(), format!("{text}]"), padded(text)] {
            if let Some((value, used)) = fast_f32(whole.as_bytes()) {
                assert_eq!(used, text.len(), "{whole}");
                assert_eq!(value.to_bits(), reference(text).to_bits(), "{whole}");
            }
        }
    }

    #[test]
    fn classify_marks_separators_points_and_stray_bytes() {
        let (separators, points, not_digits) = classify(*b"-0.5,12]x9/:.e\x80 ");
        assert_eq!(separators, 1 << 4 | 1 << 7 | 1 << 16);
        assert_eq!(points, 1 << 2 | 1 << 12);
        // '/' and ':' sit just either side of '0'..='9'.
        let digits: u32 = 1 << 1 | 1 << 3 | 1 << 5 | 1 << 6 | 1 << 9;
        assert_eq!(not_digits, !digits & 0xffff);
        assert_eq!(classify(*b"1234567890123456").0, 1 << 16);
    }

    #[test]
    fn plain_decimals_take_the_block_reader() {
        for text in [
            "-0.12345678",
            "1.3274328",
            "0.99915266",
            "-1234567.5",
            "0.000012345678",
            "3.1415926535898",
            "-0.0",
            "00.5",
        ] {
            let whole = padded(text);
            let (value, used) = by_block(whole.as_bytes()).unwrap();
            assert_eq!(
                (value.to_bits(), used),
                (reference(text).to_bits(), text.len())
            );
        }
        assert_eq!(
            by_block(padded("-0.0").as_bytes()).unwrap().0.to_bits(),
            1 << 31
        );
        // Forms it leaves to the byte reader: exponents, integers, a point without digits on
        // one side, two points, a space before the separator, 16 bytes or more, and text too
        // near the end.
        for text in [
            "2.5e+10",
            "1",
            "1.",
            ".5",
            "-.5",
            "-",
            "1.2.3",
            "1.5 ",
            "-1.5-",
            "0.12345678901234",
            "\"1.5\"",
        ] {
            assert!(by_block(padded(text).as_bytes()).is_none(), "{text}");
        }
        assert!(by_block(b"0.5]").is_none());
    }

    #[test]
    fn long_decimals_take_the_long_block_reader() {
        for text in [
            "-0.4265716075897217",
            "1.1176220178604126",
            "0.012573021650314331",
            "123.45678901234567",
            "-1234567.1234567890123",
            "123456789012345.5",
            "0.123456789012345678901234567",
        ] {
            let whole = padded(text);
            assert!(by_block(whole.as_bytes()).is_none(), "{text}");
            let parsed = by_long_block(whole.as_bytes());
            let (value, used) = parsed.unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                (value.to_bits(), used),
                (reference(text).to_bits(), text.len()),
                "{text}"
            );
        }
        // Exponents, a point past the first 16 bytes, 32 bytes or more, stray bytes, fewer than
        // 13 significant digits in the first 16 bytes (too few to round from), and text too
        // near the end.
        for text in [
            "1.1176220178604126e-05",
            "-0.000123456789012345",
            "1234567890123456.5",
            "0.1234567890123456789012345678901",
            "1.11762201786041x6",
            "1.1176220178.04126",
            "-0.42657160758972 7",
        ] {
            assert!(by_long_block(padded(text).as_bytes()).is_none(), "{text}");
        }
        assert!(by_long_block(b"-0.4265716075897217]").is_none());
    }

    #[test]
    fn midpoints_and_edges_match_fast_float() {
        // 2^24 + 1 lies exactly between two f32s: must round to even, not be rounded twice.
        for text in [
            "16777217",
            "16777219",
            "16777217.0",
            "1.0000000596046448",
            "-0.0",
            "0",
            "9007199254740993",
            "1e22",
            "1e-22",
            "3.4028235e+38",
        ] {
            same(text);
        }
        assert!(fast_f32(b"16777217").is_none());
        assert!(fast_f32(padded("16777217.0").as_bytes()).is_none());
        // Typical shortest-form FP32 text takes the fast path.
        for text in ["-0.12345678", "1.3274328", "0.99915266", "2.5e+10", "1e-7"] {
            assert!(fast_f32(text.as_bytes()).is_some(), "{text}");
            same(text);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        #[test]
        fn decimal_text_matches_fast_float(
            mantissa in 0u64..(1 << 53),
            exponent in -25i32..25,
            negative in any::<bool>(),
            split in 0usize..20,
            zeros in 0usize..4,
        ) {
            let digits = format!("{}{mantissa}", "0".repeat(zeros));
            let sign = if negative { "-" } else { "" };
            // Both with an exponent and with a decimal point inside the digits.
            same(&format!("{sign}{digits}e{exponent}"));
            let point = split.min(digits.len() - 1).max(1);
            if point < digits.len() {
                same(&format!("{sign}{}.{}", &digits[..point], &digits[point..]));
            }
        }

        #[test]
        fn text_near_f32_midpoints_matches_fast_float(x in 1e-6f32..1e6, digits in 9usize..=16) {
            // Decimal text within a few f64 ulps of the point where f32 rounding flips, with and
            // without an exponent.
            let next = f32::from_bits(x.to_bits() + 1);
            let midpoint = (f64::from(x) + f64::from(next)) / 2.0;
            same(&format!("{:.*e}", digits - 1, midpoint));
            let decimal = format!("{midpoint:.digits$}");
            same(&decimal[..decimal.len().min(15)]);
            same(&decimal);
        }

        #[test]
        fn long_text_whose_dropped_digits_decide_the_rounding(
            x in 1e-3f32..1e6,
            length in 17usize..=31,
            negative in any::<bool>(),
        ) {
            // An f32 midpoint written out to `length` bytes: the long reader rounds from the
            // leading 16 digits, so the digits it drops decide between the two f32s here.
            let next = f32::from_bits(x.to_bits() + 1);
            let midpoint = (f64::from(x) + f64::from(next)) / 2.0;
            let sign = if negative { "-" } else { "" };
            let exact = format!("{sign}{midpoint:.40}");
            let cut = &exact[..length];
            let above = format!("{}1", &cut[..length - 1]);
            for text in [cut, above.as_str(), &format!("{}9", &cut[..length - 1])] {
                same(text);
                prop_assert!(by_long_block(padded(text).as_bytes()).is_none(), "{}", text);
            }
        }

        #[test]
        fn sixteen_digits_match_the_decimal_value(
            digits in prop::array::uniform16(0u8..10),
            garbage in prop::array::uniform16(any::<u8>()),
            point in 0usize..15,
            length in 1usize..16,
            signed in any::<bool>(),
        ) {
            let last = (point + length).min(15);
            // The point's byte and every byte after `last` must not matter.
            let mut bytes = digits;
            bytes[point] = garbage[point];
            bytes[last + 1..].copy_from_slice(&garbage[last + 1..]);
            let tail = BELOW[last] & !(u128::from(signed) * 0xff);
            let values = u128::from_le_bytes(bytes);
            let mut joined: Vec<u8> = digits.iter().enumerate()
                .filter(|&(i, _)| i != point).map(|(_, &d)| d).collect();
            joined.truncate(last);
            if signed {
                joined[0] = 0;
            }
            joined.resize(16, 0);
            let expected = joined.iter().fold(0u64, |value, &d| value * 10 + u64::from(d));
            prop_assert_eq!(sixteen_digits(values, BELOW[point], tail), expected);
            prop_assert_eq!(sixteen_digits_swar(values, BELOW[point], tail), expected);
        }

        #[test]
        fn shortest_f32_text_round_trips(bits in any::<u32>()) {
            let value = f32::from_bits(bits);
            prop_assume!(value.is_finite());
            // FP32's own shortest text, and the f64 text of the same value (Python's `tolist()`).
            let shortest = zmij::Buffer::new().format_finite(value).to_owned();
            let wide = zmij::Buffer::new().format_finite(f64::from(value)).to_owned();
            for text in [shortest, wide] {
                for whole in [text.clone(), padded(&text)] {
                    if let Some((parsed, used)) = fast_f32(whole.as_bytes()) {
                        prop_assert_eq!(parsed.to_bits(), value.to_bits(), "{}", text);
                        prop_assert_eq!(used, text.len());
                    }
                }
            }
        }
    }
}
