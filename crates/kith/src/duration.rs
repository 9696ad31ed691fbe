//! Durations on the command line (`90d`, `12h`, `30m`, `45s`, `2w`), bounded
//! where they are parsed. No dependency but `time`, so that the fuzz target
//! (`fuzz/fuzz_targets/duration.rs`) runs exactly this file.

use time::Duration;

/// Longest duration any flag takes (100 years): what no lifetime, window or
/// interval needs, and far inside what dates and timers can represent.
pub(crate) const MAX_DURATION: Duration = Duration::days(36_500);

/// A number of ASCII digits and one unit, positive and at most `max`
/// (`max` is at most [`MAX_DURATION`]). Never overflows: the number is
/// compared with the limit in the unit given before anything is multiplied.
pub(crate) fn parse_duration_at_most(s: &str, max: Duration) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let unit_seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ if num.is_empty() => {
            return Err(format!(
                "{s:?}: expected a number and a unit, like 90d or 12h"
            ))
        }
        _ => return Err(format!("{s:?}: unit must be s, m, h, d or w")),
    };
    let max = max.min(MAX_DURATION);
    let max_seconds = u64::try_from(max.whole_seconds()).unwrap_or(0);
    let too_long = || {
        let limit = if max.whole_seconds() % 86_400 == 0 {
            format!("{} days", max.whole_days())
        } else {
            format!("{} seconds", max.whole_seconds())
        };
        format!("{s:?} is too long: at most {limit}")
    };
    if num.is_empty() {
        return Err(format!(
            "{s:?}: expected a number and a unit, like 90d or 12h"
        ));
    }
    // More digits than u64 holds is too long, not malformed.
    let n: u64 = num.parse().map_err(|_| too_long())?;
    if n == 0 {
        return Err(format!("{s:?}: must be positive"));
    }
    if n > max_seconds / unit_seconds {
        return Err(too_long());
    }
    // n * unit_seconds <= max_seconds <= 100 years: fits an i64.
    let seconds = i64::try_from(n * unit_seconds).map_err(|_| too_long())?;
    Ok(Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS: [(&str, i64); 5] = [
        ("s", 1),
        ("m", 60),
        ("h", 3_600),
        ("d", 86_400),
        ("w", 604_800),
    ];

    /// xorshift64*: deterministic, so a failing input can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// What every answer must satisfy, whatever the input.
    fn check(input: &str, max: Duration) -> bool {
        let answer = parse_duration_at_most(input, max);
        match &answer {
            Ok(d) => {
                let d = *d;
                assert!(d > Duration::ZERO, "{input:?} gave {d}");
                assert!(d <= max && d <= MAX_DURATION, "{input:?} gave {d} > {max}");
                // Whatever was accepted can be added to any date a CA meets.
                let year_9000 = time::macros::datetime!(9000-01-01 0:00 UTC);
                assert!(year_9000.checked_add(d).is_some(), "{input:?}");
                // And reads back the same in seconds.
                let again = parse_duration_at_most(&format!("{}s", d.whole_seconds()), max);
                assert_eq!(again, Ok(d), "{input:?}");
            }
            Err(message) => assert!(!message.is_empty(), "{input:?}: empty error"),
        }
        answer.is_ok()
    }

    #[test]
    fn generated_inputs_never_panic_and_stay_within_the_limit() {
        let mut rng = Rng(0xd1b5_4a32_d192_ed03);
        let pieces = [
            "0",
            "1",
            "7",
            "9",
            "00",
            "36500",
            "5214",
            "87600",
            "2147483647",
            "4294967296",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "999999999999999999999999",
            "-",
            "+",
            ".",
            "e",
            " ",
            "\t",
            "s",
            "m",
            "h",
            "d",
            "w",
            "y",
            "ms",
            "D",
            "\u{0661}",
            "\u{00e9}",
            "\u{0301}",
            "\u{1f600}",
            "\0",
            "_",
        ];
        let maxima = [
            Duration::seconds(1),
            Duration::days(30),
            Duration::days(365),
            Duration::days(1825),
            MAX_DURATION,
            Duration::MAX,
        ];
        let mut accepted = 0;
        for _ in 0..200_000 {
            let len = rng.next() % 5;
            let input: String = (0..len).map(|_| rng.pick(&pieces)).collect();
            let max = maxima[(rng.next() % maxima.len() as u64) as usize];
            accepted += usize::from(check(&input, max));
        }
        // The generator reaches the accepting paths too, not only refusals.
        assert!(accepted > 500, "only {accepted} inputs were accepted");
    }

    #[test]
    fn exact_around_every_limit() {
        for max in [Duration::days(30), Duration::days(365), MAX_DURATION] {
            for (unit, secs) in UNITS {
                let n = max.whole_seconds() / secs;
                assert_eq!(
                    parse_duration_at_most(&format!("{n}{unit}"), max),
                    Ok(Duration::seconds(n * secs)),
                    "{n}{unit}"
                );
                let over = parse_duration_at_most(&format!("{}{unit}", n + 1), max);
                if (n + 1) * secs > max.whole_seconds() {
                    let e = over.expect_err("one past the limit");
                    assert!(e.contains("at most"), "{e}");
                }
                for huge in [
                    "9223372036854775807",
                    "18446744073709551616",
                    "99999999999999999999",
                ] {
                    let e =
                        parse_duration_at_most(&format!("{huge}{unit}"), max).expect_err("huge");
                    assert!(e.contains("too long"), "{huge}{unit}: {e}");
                }
            }
        }
    }

    #[test]
    fn malformed_inputs_say_what_is_expected() {
        for bad in [
            "",
            " ",
            "d",
            "12",
            "1y",
            "1 d",
            "-1d",
            "+1d",
            "1.5d",
            "0d",
            "1dd",
            "\u{0661}d",
        ] {
            assert!(
                parse_duration_at_most(bad, MAX_DURATION).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_duration_at_most(" 90d ", MAX_DURATION),
            Ok(Duration::days(90))
        );
    }
}
