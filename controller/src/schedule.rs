//! Sync schedules: a cron expression (plus optional IANA time zone) turned into fire times.
//!
//! Users write schedules the way they write Kubernetes CronJobs, so this module follows the
//! CronJob dialect (robfig/cron's standard parser) rather than the `cron` crate's own one:
//!
//! - 5 fields `minute hour day-of-month month day-of-week`, or 6 with seconds first;
//! - day-of-week `0-7` with Sunday as 0 or 7, names `SUN`..`SAT` and `JAN`..`DEC`, ranges,
//!   lists, steps (`*/15`, `1-30/5`, `5/10` meaning `5-max/10`), `?` as `*`;
//! - `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`;
//! - when both day-of-month and day-of-week are restricted, a day matches if EITHER matches
//!   (the classic cron rule; the `cron` crate would require both);
//! - an optional `CRON_TZ=Zone ` (or `TZ=Zone `) prefix, or a time zone passed separately.
//!
//! Each field is parsed here (so errors name the field), then handed to the `cron` crate as
//! explicit lists with weekday *names*: the crate numbers weekdays 1-7 from Sunday, so
//! passing numbers through would shift every weekday by one.
//!
//! Time zones: fire times are computed in local wall-clock time. A wall-clock time that does
//! not exist (the spring-forward gap) fires at the same offset as before the transition, as
//! Go's `time.Date` does (02:30 becomes 03:30 the day clocks skip 02:00-03:00), so a daily
//! sync is never skipped; a wall-clock time that occurs twice (fall-back) fires once.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// Why a schedule string was refused. The message names the offending field and value so a
/// user can fix the manifest from the condition text alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression is empty or only white space.
    #[error("schedule is empty")]
    Empty,
    /// The expression does not have 5 or 6 fields.
    #[error(
        "schedule {expr:?} has {got} fields; expected 5 (minute hour day-of-month month \
         day-of-week) or 6 (second first)"
    )]
    FieldCount {
        /// The expression as written.
        expr: String,
        /// How many fields it had.
        got: usize,
    },
    /// One field is malformed or out of range.
    #[error("invalid {field} field {value:?}: {reason}")]
    Field {
        /// Which field (e.g. `day-of-week`).
        field: &'static str,
        /// The field's text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `@` macro we do not know.
    #[error(
        "unknown schedule macro {0:?}; supported: @yearly, @annually, @monthly, @weekly, \
         @daily, @midnight, @hourly"
    )]
    UnknownMacro(String),
    /// The time zone is not an IANA zone name.
    #[error("unknown time zone {0:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    TimeZone(String),
    /// The schedule names a time zone twice, differently.
    #[error("schedule sets time zone {in_expr:?} but the mapping sets {given:?}; set only one")]
    ConflictingTimeZones {
        /// From the `CRON_TZ=` prefix.
        in_expr: String,
        /// From the separate time-zone setting.
        given: String,
    },
    /// The fields were valid but the `cron` crate refused the translation (a bug here).
    #[error("internal error translating schedule {expr:?}: {reason}")]
    Internal {
        /// The expression as written.
        expr: String,
        /// The crate's message.
        reason: String,
    },
}

/// A parsed schedule: call [`Schedule::next_after`] to learn when it fires next.
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
    time_zone: Tz,
    /// One schedule, or two whose union is the schedule (day-of-month OR day-of-week).
    /// They run on "naive local time expressed as UTC"; see [`Schedule::next_after`].
    parts: Vec<cron::Schedule>,
}

impl Schedule {
    /// Parses `expr`, with `time_zone` (an IANA name) when the mapping sets one. Without a
    /// zone (and no `CRON_TZ=` prefix) the schedule runs in UTC.
    pub fn parse(expr: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let trimmed = expr.trim();
        let (zone_in_expr, body) = split_zone_prefix(trimmed);
        let zone_name = match (
            zone_in_expr,
            time_zone.map(str::trim).filter(|z| !z.is_empty()),
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(ScheduleError::ConflictingTimeZones {
                    in_expr: a.to_owned(),
                    given: b.to_owned(),
                });
            }
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        let time_zone = match zone_name {
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.into()))?,
            None => Tz::UTC,
        };
        let body = expand_macro(body)?;
        let fields = CronFields::parse(body)?;
        let parts = fields
            .to_cron_expressions()
            .into_iter()
            .map(|e| {
                cron::Schedule::from_str(&e).map_err(|err| ScheduleError::Internal {
                    expr: expr.to_owned(),
                    reason: err.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            source: expr.to_owned(),
            time_zone,
            parts,
        })
    }

    /// The expression as the user wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The zone the schedule's wall-clock times are in.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The first fire time strictly after `after`, or `None` if the schedule never fires
    /// again (for example `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Walk wall-clock time: the cron crate sees local time dressed as UTC, so DST never
        // confuses its field arithmetic; each candidate is then mapped back to an instant.
        let mut cursor = after.with_timezone(&self.time_zone).naive_local();
        // A handful of candidates can map to instants not after `after` (fall-back overlap);
        // the bound only guards against a pathological zone table.
        for _ in 0..64 {
            let next_local = self
                .parts
                .iter()
                .filter_map(|p| p.after(&Utc.from_utc_datetime(&cursor)).next())
                .min()?
                .naive_utc();
            if let Some(instant) = self.resolve_local(next_local, after) {
                return Some(instant);
            }
            cursor = next_local;
        }
        None
    }

    /// Fire times after `after`, in order: handy for status (`nextSyncTime`) and tests.
    pub fn upcoming(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(after), move |t| self.next_after(*t))
    }

    /// Maps a local wall-clock time to the instant it fires at, if that is after `after`.
    fn resolve_local(&self, local: NaiveDateTime, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.time_zone;
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)).filter(|t| *t > after),
            LocalResult::Ambiguous(early, late) => [early, late]
                .into_iter()
                .map(|t| t.with_timezone(&Utc))
                .find(|t| *t > after),
            LocalResult::None => {
                // In a spring-forward gap: use the offset in force just before it.
                let before_gap = (1..=48).find_map(|h| {
                    tz.from_local_datetime(&(local - Duration::hours(h)))
                        .earliest()
                        .map(|t| t.offset().fix())
                })?;
                let instant = Utc.from_utc_datetime(&(local - before_gap));
                Some(instant).filter(|t| *t > after)
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.source, self.time_zone)
    }
}

/// Splits a robfig-style `CRON_TZ=Zone ` or `TZ=Zone ` prefix off the expression.
fn split_zone_prefix(expr: &str) -> (Option<&str>, &str) {
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = expr.strip_prefix(prefix) {
            let (zone, body) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return (Some(zone), body.trim_start());
        }
    }
    (None, expr)
}

/// Replaces an `@` macro by its 5-field form.
fn expand_macro(body: &str) -> Result<&str, ScheduleError> {
    if body.is_empty() {
        return Err(ScheduleError::Empty);
    }
    if !body.starts_with('@') {
        return Ok(body);
    }
    match body.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        _ => Err(ScheduleError::UnknownMacro(body.to_owned())),
    }
}

/// The values one field allows, and whether it was written as a bare `*`/`?` (which matters
/// for the day-of-month/day-of-week OR rule).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldSet {
    values: BTreeSet<u32>,
    star: bool,
}

/// How one field is read: its name for messages, its range, and its symbolic names.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec::numeric("second", 0, 59);
const MINUTE: FieldSpec = FieldSpec::numeric("minute", 0, 59);
const HOUR: FieldSpec = FieldSpec::numeric("hour", 0, 23);
const DAY_OF_MONTH: FieldSpec = FieldSpec::numeric("day-of-month", 1, 31);
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
/// Day of week: 0-7, both 0 and 7 meaning Sunday; names map to 0-6.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &WEEKDAY_NAMES,
};
/// Weekday names in the order of our 0-6 numbering, as the `cron` crate reads them.
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl FieldSpec {
    /// A field of plain numbers `min..=max`, without symbolic names.
    const fn numeric(name: &'static str, min: u32, max: u32) -> Self {
        FieldSpec {
            name,
            min,
            max,
            names: &[],
        }
    }

    fn error(&self, value: &str, reason: impl Into<String>) -> ScheduleError {
        ScheduleError::Field {
            field: self.name,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// Parses a whole field: a comma-separated list of `*`, `?`, `N`, `A-B`, each with an
    /// optional `/step`.
    fn parse(&self, text: &str) -> Result<FieldSet, ScheduleError> {
        let mut values = BTreeSet::new();
        let mut star = false;
        for item in text.split(',') {
            let (range, item_star) = self.parse_item(text, item)?;
            values.extend(range);
            star |= item_star;
        }
        Ok(FieldSet { values, star })
    }

    fn parse_item(&self, field: &str, item: &str) -> Result<(Vec<u32>, bool), ScheduleError> {
        if item.is_empty() {
            return Err(self.error(field, "empty list element"));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| self.error(field, format!("step {s:?} is not a number")))?;
                if step == 0 {
                    return Err(self.error(field, "step must be at least 1"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let is_star = range == "*" || range == "?";
        let (start, end) = if is_star {
            (self.min, self.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (self.value(field, a)?, self.value(field, b)?);
            if a > b {
                return Err(self.error(field, format!("range {range:?} starts after it ends")));
            }
            (a, b)
        } else {
            let a = self.value(field, range)?;
            // "N/step" means "N-max/step", as in robfig/cron.
            (a, if step.is_some() { self.max } else { a })
        };
        let step = step.unwrap_or(1);
        let values = (start..=end).step_by(step as usize).collect();
        Ok((values, is_star && step == 1))
    }

    fn value(&self, field: &str, text: &str) -> Result<u32, ScheduleError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            // Month names start at 1 (JAN), weekday names at 0 (SUN): both equal `min + i`
            // for their field because day-of-week's min is 0 and month's is 1.
            return Ok(self.min + i as u32);
        }
        let n: u32 = text.parse().map_err(|_| {
            let hint = if self.names.is_empty() {
                String::new()
            } else {
                format!(" or one of {}", self.names.join(","))
            };
            self.error(
                field,
                format!(
                    "{text:?} is not a number in {}-{}{hint}",
                    self.min, self.max
                ),
            )
        })?;
        if n < self.min || n > self.max {
            return Err(self.error(
                field,
                format!("{n} is out of range {}-{}", self.min, self.max),
            ));
        }
        Ok(n)
    }
}

/// All six fields of a schedule, validated.
#[derive(Debug)]
struct CronFields {
    second: FieldSet,
    minute: FieldSet,
    hour: FieldSet,
    day_of_month: FieldSet,
    month: FieldSet,
    /// Normalised to 0-6 (7 folded into 0).
    day_of_week: FieldSet,
}

impl CronFields {
    fn parse(body: &str) -> Result<Self, ScheduleError> {
        let fields: Vec<&str> = body.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            got => {
                return Err(ScheduleError::FieldCount {
                    expr: body.to_owned(),
                    got,
                });
            }
        };
        let mut day_of_week = DAY_OF_WEEK.parse(rest[4])?;
        if day_of_week.values.remove(&7) {
            day_of_week.values.insert(0);
        }
        Ok(Self {
            second: SECOND.parse(second)?,
            minute: MINUTE.parse(rest[0])?,
            hour: HOUR.parse(rest[1])?,
            day_of_month: DAY_OF_MONTH.parse(rest[2])?,
            month: MONTH.parse(rest[3])?,
            day_of_week,
        })
    }

    /// The `cron` crate expressions whose union is this schedule: one, or two when both day
    /// fields are restricted (cron's day-of-month OR day-of-week rule).
    fn to_cron_expressions(&self) -> Vec<String> {
        let list = |f: &FieldSet| join(f.values.iter().map(u32::to_string));
        let days = |f: &FieldSet| join(f.values.iter().map(|d| WEEKDAY_NAMES[*d as usize].into()));
        let head = format!(
            "{} {} {}",
            list(&self.second),
            list(&self.minute),
            list(&self.hour)
        );
        let month = list(&self.month);
        if self.day_of_month.star || self.day_of_week.star {
            vec![format!(
                "{head} {} {month} {}",
                list(&self.day_of_month),
                days(&self.day_of_week)
            )]
        } else {
            vec![
                format!("{head} {} {month} *", list(&self.day_of_month)),
                format!("{head} * {month} {}", days(&self.day_of_week)),
            ]
        }
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next_n(expr: &str, tz: Option<&str>, after: &str, n: usize) -> Vec<String> {
        let schedule = Schedule::parse(expr, tz).unwrap_or_else(|e| panic!("{expr}: {e}"));
        schedule
            .upcoming(at(after))
            .take(n)
            .map(|t| t.to_rfc3339())
            .collect()
    }

    /// Hand-checked fire times. 2026-11-21 is a Saturday.
    #[test]
    fn next_fire_times() {
        let sat_noon = "2026-11-21T12:07:30+00:00";
        let cases: &[(&str, Option<&str>, &str, &[&str])] = &[
            // Sunday as 0, as 7 and by name: the next Sunday 03:00.
            (
                "0 3 * * 0",
                None,
                sat_noon,
                &["2026-11-22T03:00:00+00:00", "2026-11-29T03:00:00+00:00"],
            ),
            (
                "0 3 * * 7",
                None,
                sat_noon,
                &["2026-11-22T03:00:00+00:00", "2026-11-29T03:00:00+00:00"],
            ),
            (
                "0 3 * * sun",
                None,
                sat_noon,
                &["2026-11-22T03:00:00+00:00"],
            ),
            // Weekdays: Monday and Tuesday follow the Saturday.
            (
                "30 1 * * 1-5",
                None,
                sat_noon,
                &["2026-11-23T01:30:00+00:00", "2026-11-24T01:30:00+00:00"],
            ),
            (
                "30 1 * * MON-FRI",
                None,
                sat_noon,
                &["2026-11-23T01:30:00+00:00"],
            ),
            // Fri-Sun through 7: Sunday, then Friday, then Saturday.
            (
                "0 9 * * 5-7",
                None,
                sat_noon,
                &[
                    "2026-11-22T09:00:00+00:00",
                    "2026-11-27T09:00:00+00:00",
                    "2026-11-28T09:00:00+00:00",
                ],
            ),
            // Steps and lists.
            (
                "*/15 * * * *",
                None,
                sat_noon,
                &["2026-11-21T12:15:00+00:00", "2026-11-21T12:30:00+00:00"],
            ),
            (
                "5/20 * * * *",
                None,
                sat_noon,
                &[
                    "2026-11-21T12:25:00+00:00",
                    "2026-11-21T12:45:00+00:00",
                    "2026-11-21T13:05:00+00:00",
                ],
            ),
            (
                "0 8,20 * * *",
                None,
                sat_noon,
                &["2026-11-21T20:00:00+00:00", "2026-11-22T08:00:00+00:00"],
            ),
            (
                "*/1 * * * *",
                None,
                sat_noon,
                &["2026-11-21T12:08:00+00:00"],
            ),
            // Month names.
            (
                "0 0 1 JAN *",
                None,
                sat_noon,
                &["2027-01-01T00:00:00+00:00"],
            ),
            (
                "0 0 1 jan,jul *",
                None,
                sat_noon,
                &["2027-01-01T00:00:00+00:00", "2027-07-01T00:00:00+00:00"],
            ),
            // Day-of-month OR day-of-week: 13th or a Friday (Dec 13 2026 is a Sunday).
            (
                "0 12 13 * 5",
                None,
                sat_noon,
                &[
                    "2026-11-27T12:00:00+00:00",
                    "2026-12-04T12:00:00+00:00",
                    "2026-12-11T12:00:00+00:00",
                    "2026-12-13T12:00:00+00:00",
                    "2026-12-18T12:00:00+00:00",
                ],
            ),
            // A star in either day field means the other one alone decides.
            ("0 12 * * 5", None, sat_noon, &["2026-11-27T12:00:00+00:00"]),
            (
                "0 12 13 * ?",
                None,
                sat_noon,
                &["2026-12-13T12:00:00+00:00"],
            ),
            // Six fields, seconds first.
            (
                "*/10 * * * * *",
                None,
                sat_noon,
                &["2026-11-21T12:07:40+00:00", "2026-11-21T12:07:50+00:00"],
            ),
            (
                "30 0 3 * * 0",
                None,
                sat_noon,
                &["2026-11-22T03:00:30+00:00"],
            ),
            // Macros.
            ("@hourly", None, sat_noon, &["2026-11-21T13:00:00+00:00"]),
            ("@daily", None, sat_noon, &["2026-11-22T00:00:00+00:00"]),
            ("@midnight", None, sat_noon, &["2026-11-22T00:00:00+00:00"]),
            ("@weekly", None, sat_noon, &["2026-11-22T00:00:00+00:00"]),
            ("@monthly", None, sat_noon, &["2026-12-01T00:00:00+00:00"]),
            ("@yearly", None, sat_noon, &["2027-01-01T00:00:00+00:00"]),
            ("@annually", None, sat_noon, &["2027-01-01T00:00:00+00:00"]),
            // Time zones: 03:00 in Berlin (UTC+1 in November) is 02:00 UTC.
            (
                "0 3 * * *",
                Some("Europe/Berlin"),
                sat_noon,
                &["2026-11-22T02:00:00+00:00"],
            ),
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                None,
                sat_noon,
                &["2026-11-22T00:00:00+00:00"],
            ),
            // Exactly at a fire time: strictly after.
            (
                "0 3 * * *",
                None,
                "2026-11-22T03:00:00+00:00",
                &["2026-11-23T03:00:00+00:00"],
            ),
        ];
        for (expr, tz, after, want) in cases {
            assert_eq!(
                next_n(expr, *tz, after, want.len()),
                *want,
                "{expr} tz={tz:?}"
            );
        }
    }

    /// New York springs forward on Sunday 2026-03-08 at 02:00 EST -> 03:00 EDT.
    #[test]
    fn spring_forward() {
        // 03:00 local: 08:00Z under EST, then 07:00Z under EDT (23 hours later).
        assert_eq!(
            next_n(
                "0 3 * * *",
                Some("America/New_York"),
                "2026-03-07T00:00:00Z",
                3
            ),
            [
                "2026-03-07T08:00:00+00:00",
                "2026-03-08T07:00:00+00:00",
                "2026-03-09T07:00:00+00:00"
            ]
        );
        // 02:30 does not exist on March 8: it fires at 03:30 EDT (07:30Z), not skipped.
        assert_eq!(
            next_n(
                "30 2 * * *",
                Some("America/New_York"),
                "2026-03-07T12:00:00Z",
                2
            ),
            ["2026-03-08T07:30:00+00:00", "2026-03-09T06:30:00+00:00"]
        );
    }

    /// New York falls back on Sunday 2026-11-01 at 02:00 EDT -> 01:00 EST.
    #[test]
    fn fall_back_fires_once() {
        // 01:30 happens twice (05:30Z EDT, 06:30Z EST); the sync runs once, at the first.
        assert_eq!(
            next_n(
                "30 1 * * *",
                Some("America/New_York"),
                "2026-10-31T12:00:00Z",
                3
            ),
            [
                "2026-11-01T05:30:00+00:00",
                "2026-11-02T06:30:00+00:00",
                "2026-11-03T06:30:00+00:00"
            ]
        );
    }

    #[test]
    fn never_firing_schedule_has_no_next_time() {
        let s = Schedule::parse("0 0 30 2 *", None).unwrap();
        assert_eq!(s.next_after(at("2026-11-21T00:00:00Z")), None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("", None, "schedule is empty"),
            ("   ", None, "schedule is empty"),
            ("0 3 * *", None, "has 4 fields"),
            ("0 0 3 * * * *", None, "has 7 fields"),
            ("61 * * * *", None, "invalid minute field \"61\""),
            ("0 24 * * *", None, "invalid hour field \"24\""),
            ("0 0 0 * *", None, "invalid day-of-month field \"0\""),
            ("0 0 32 * *", None, "invalid day-of-month field \"32\""),
            ("0 0 * 13 *", None, "invalid month field \"13\""),
            ("0 0 * FOO *", None, "invalid month field \"FOO\""),
            (
                "0 3 * * 8",
                None,
                "invalid day-of-week field \"8\": 8 is out of range 0-7",
            ),
            (
                "0 3 * * MON-XYZ",
                None,
                "invalid day-of-week field \"MON-XYZ\"",
            ),
            ("0 3 * * 5-1", None, "starts after it ends"),
            ("*/0 * * * *", None, "step must be at least 1"),
            ("1,,2 * * * *", None, "empty list element"),
            ("60 * * * * *", None, "invalid second field \"60\""),
            ("0 3 L * *", None, "invalid day-of-month field \"L\""),
            ("@every 5m", None, "unknown schedule macro"),
            (
                "0 3 * * *",
                Some("Mars/Olympus"),
                "unknown time zone \"Mars/Olympus\"",
            ),
            (
                "CRON_TZ=UTC 0 3 * * *",
                Some("Europe/Berlin"),
                "sets time zone \"UTC\"",
            ),
        ];
        for (expr, tz, want) in cases {
            let err = Schedule::parse(expr, *tz).expect_err(expr).to_string();
            assert!(err.contains(want), "{expr:?}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn weekday_numbers_reach_the_cron_crate_as_names() {
        let fields = CronFields::parse("0 3 * * 0,7,1").unwrap();
        assert_eq!(
            fields.to_cron_expressions(),
            [
                "0 0 3 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31 1,2,3,4,5,6,7,8,9,10,11,12 SUN,MON"
            ]
        );
    }

    #[test]
    fn same_zone_twice_is_fine() {
        let s = Schedule::parse("CRON_TZ=UTC 0 3 * * *", Some("UTC")).unwrap();
        assert_eq!(s.time_zone(), Tz::UTC);
        assert_eq!(s.source(), "CRON_TZ=UTC 0 3 * * *");
    }
}
