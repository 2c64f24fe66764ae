//! The deterministic generator of the testing warehouse's synthetic people.
//!
//! Randomness comes from ChaCha8 seeded with `seed` through `SeedableRng::seed_from_u64`, and
//! every draw is derived from raw `next_u64` words by code in this file (no distribution whose
//! algorithm could change between rand releases), so a seed gives the same rows on every machine
//! and release. Numbers are rounded to cents in the CSV so that sums are exact.

use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::warehouse::Value;

/// The seed of the bundled fixture.
pub const FIXTURE_SEED: u64 = 42;
/// Rows in the bundled fixture.
pub const FIXTURE_ROWS: u64 = 100_000;

const FEMALE: &[&str] = &[
    "Aisha",
    "Amara",
    "Ana",
    "Chen",
    "Chloe",
    "Daniela",
    "Emily",
    "Fatima",
    "Grace",
    "Hana",
    "Ifeoma",
    "Isabella",
    "Jia",
    "Laila",
    "Leila",
    "Lucia",
    "Maria",
    "Maya",
    "Mei",
    "Naledi",
    "Nia",
    "Noor",
    "Olivia",
    "Priya",
    "Rosa",
    "Sakura",
    "Sara",
    "Sofia",
    "Valentina",
    "Yasmin",
    "Zainab",
    "Zara",
];
const MALE: &[&str] = &[
    "Adebayo",
    "Ahmed",
    "Alejandro",
    "Ali",
    "Arjun",
    "Carlos",
    "Chidi",
    "Daniel",
    "David",
    "Diego",
    "Hiroshi",
    "Ibrahim",
    "James",
    "Javier",
    "Jin",
    "Juan",
    "Kwame",
    "Liam",
    "Luis",
    "Mateo",
    "Mohammed",
    "Noah",
    "Omar",
    "Raj",
    "Ravi",
    "Samuel",
    "Tariq",
    "Thabo",
    "Wei",
    "Yusuf",
    "Kenji",
    "Oliver",
];
const LAST: &[&str] = &[
    "Abdullah",
    "Adeyemi",
    "Ali",
    "Banda",
    "Brown",
    "Chen",
    "Cohen",
    "Diaz",
    "Garcia",
    "Gonzalez",
    "Gupta",
    "Haddad",
    "Hernandez",
    "Ito",
    "Johnson",
    "Jones",
    "Khan",
    "Kim",
    "Kumar",
    "Lee",
    "Li",
    "Lopez",
    "Martin",
    "Martinez",
    "Mensah",
    "Miller",
    "Mohamed",
    "Nakamura",
    "Nguyen",
    "Okafor",
    "Okonkwo",
    "Park",
    "Patel",
    "Perez",
    "Rahman",
    "Ramirez",
    "Reddy",
    "Rodriguez",
    "Sanchez",
    "Santos",
    "Sato",
    "Shah",
    "Sharma",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Taylor",
    "Torres",
    "Wang",
    "Williams",
    "Wilson",
    "Wu",
    "Yamamoto",
    "Yang",
    "Zhang",
];
/// Six ethnicities in unequal shares (cumulative weights out of 1000).
const ETHNICITIES: &[(&str, u64)] = &[
    ("Asian", 394),
    ("White", 244),
    ("Black", 128),
    ("Hispanic", 112),
    ("Indian", 76),
    ("Arabic", 46),
];
/// The two values of `uuid_filter`.
pub const UUID_FILTER_VALUES: [&str; 2] = [
    "9bd6e6b8-8b1c-4e8d-9b9a-1f0f4d6c2a01",
    "5e2f1c3a-7d4b-4a6e-8c2d-3b9e0f7a6d12",
];

struct Draw(ChaCha8Rng);

impl Draw {
    /// Uniform in [0, 1) from the top 53 bits of one word.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform integer in [0, n) by rejection (no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.0.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Standard normal by Box–Muller (one value per call; simple and portable).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Schools of the synthetic population, for cluster designs (docs/cluster.md).
pub const SCHOOLS: u64 = 300;
/// Weight of the (standardized) current income in the score that sorts people into schools: the
/// schools' share of the income variance, i.e. its intraclass correlation, is about its square
/// (0.16), a typical size for schools.
const SCHOOL_SORTING: f64 = 0.4;

/// SplitMix64: a fixed, portable mixer of one word.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The school of person `id` (1-based) and its two school-level fields: `(school_id,
/// school_district, school_type)`. People are sorted into schools by a score mixing their
/// current income with noise hashed from the seed and the id (no draw from the row stream, so
/// the other columns do not depend on the schools), so incomes cluster by school; the 60
/// schools of the highest scores are `private`. School ids are the score ranks permuted
/// (×7919 mod 300), school sizes vary (about 230 to 430 people in 100,000), and the district
/// is a function of the school id.
pub fn school(seed: u64, id: u64, current_income: f64) -> (i64, &'static str, &'static str) {
    let unit = |w: u64| (w >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let h = splitmix64(seed ^ splitmix64(id));
    let u1 = 1.0 - unit(h);
    let u2 = unit(splitmix64(h));
    let noise = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let z = (current_income - 26_300.0) / 6_750.0;
    let score = SCHOOL_SORTING * z + (1.0 - SCHOOL_SORTING * SCHOOL_SORTING).sqrt() * noise;
    // Logistic approximation of the normal CDF, then uneven school widths.
    let p = 1.0 / (1.0 + (-1.702 * score).exp());
    let w = p + 0.25 * (std::f64::consts::TAU * 5.0 * p).sin() / (std::f64::consts::TAU * 5.0);
    let rank = ((w * SCHOOLS as f64) as u64).min(SCHOOLS - 1);
    let school_id = (rank * 7919) % SCHOOLS + 1;
    let district = ["north", "south", "east", "west"][(splitmix64(school_id) % 4) as usize];
    let kind = if rank >= SCHOOLS - 60 {
        "private"
    } else {
        "public"
    };
    (school_id as i64, district, kind)
}

/// An endless-on-demand stream of `n` synthetic rows in [`super::COLUMNS`] order.
pub fn rows(n: u64, seed: u64) -> impl Iterator<Item = Vec<Value>> {
    let mut d = Draw(ChaCha8Rng::seed_from_u64(seed));
    let day0 = NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date");
    let ts0 = NaiveDateTime::new(day0, chrono::NaiveTime::MIN);
    (0..n).map(move |i| {
        let female = d.chance(0.51);
        let gender = if female { "Female" } else { "Male" };
        let e = d.below(1000);
        let mut acc = 0;
        let mut ethnicity = ETHNICITIES[0].0;
        for (name, w) in ETHNICITIES {
            acc += w;
            if e < acc {
                ethnicity = name;
                break;
            }
        }
        let first = d.pick(if female { FEMALE } else { MALE });
        let last = d.pick(LAST);
        // Log-normal income around 30k, 4% missing.
        let income = cents((10.3 + 0.45 * d.normal()).exp());
        let income = if d.chance(0.04) {
            Value::Null
        } else {
            Value::Float(income)
        };
        let potential_0 = cents(50.0 + 10.0 * d.normal());
        let potential_1 = (potential_0 + 5.0 + 3.0 * d.normal()).round() as i64;
        let registered = d.chance(0.82);
        let onboarded = registered && d.chance(0.65);
        let engaged = if d.chance(0.03) {
            Value::Null
        } else {
            Value::Bool(onboarded && d.chance(0.55))
        };
        let retained = matches!(engaged, Value::Bool(true)) && d.chance(0.5);
        let onetime = d.chance(0.3);
        let baseline = cents(
            (10.35 + 0.35 * d.normal())
                .exp()
                .clamp(9_778.91, 120_621.37),
        );
        let current = cents((26_300.0 + 6_750.0 * d.normal()).clamp(8_466.28, 96_941.0));
        let uuid = if d.chance(0.02) {
            Value::Null
        } else {
            Value::Uuid(
                UUID_FILTER_VALUES[d.below(2) as usize]
                    .parse()
                    .expect("valid uuid"),
            )
        };
        let day = day0 + Duration::days(d.below(366) as i64);
        let sample_date = if d.chance(0.01) {
            Value::Null
        } else {
            Value::Date(day)
        };
        let sample_ts = ts0 + Duration::seconds(d.below(366 * 86_400) as i64);
        let tz_ts = Utc.from_utc_datetime(&(ts0 + Duration::seconds(d.below(366 * 86_400) as i64)));
        let (school_id, district, kind) = school(seed, i + 1, current);
        vec![
            Value::Int(i as i64 + 1),
            Value::Text(gender.into()),
            Value::Text(ethnicity.into()),
            Value::Text(first.into()),
            Value::Text(last.into()),
            income,
            Value::Float(potential_0),
            Value::Int(potential_1),
            Value::Bool(true),
            Value::Bool(registered),
            Value::Bool(onboarded),
            engaged,
            Value::Bool(retained),
            Value::Bool(onetime),
            Value::Float(baseline),
            Value::Float(current),
            uuid,
            sample_date,
            Value::Timestamp(sample_ts),
            Value::TimestampTz(tz_ts),
            Value::Int(school_id),
            Value::Text(district.into()),
            Value::Text(kind.into()),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let a: Vec<_> = rows(500, 7).collect();
        let b: Vec<_> = rows(500, 7).collect();
        assert_eq!(a, b);
        assert_ne!(a, rows(500, 8).collect::<Vec<_>>());
        assert!(a.iter().all(|r| r.len() == super::super::COLUMNS.len()));
        let asian = a
            .iter()
            .filter(|r| r[2] == Value::Text("Asian".into()))
            .count();
        assert!((150..250).contains(&asian), "{asian}");
        assert!(a.iter().any(|r| r[5].is_null()));
    }
}
