//! Recommendations: a pure function from what a user watched and rated, and
//! how titles relate, to a ranked list with reasons. The handler gathers the
//! facts from MongoDB; everything here is plain data, so it is unit tested.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// How many titles a list holds.
pub const LIST_LEN: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct TitleFact {
    pub title_id: i64,
    pub title: String,
    pub genres: Vec<String>,
}

/// One viewing; `completion` is 0–1 (1 when completed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewFact {
    pub title_id: i64,
    pub completion: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingFact {
    pub title_id: i64,
    pub stars: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationFact {
    pub title_id: i64,
    pub related_title_id: i64,
    /// `similar`, `sequel`, `prequel` or `same_collection`.
    pub relation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub title_id: i64,
    pub title: String,
    pub score: f64,
    pub reasons: Vec<String>,
}

/// A title counts as a source of relations when it was mostly watched or rated well.
const SOURCE_COMPLETION: f64 = 0.5;

fn rating_weight(stars: u8) -> f64 {
    match stars {
        5 => 2.0,
        4 => 1.0,
        2 => -1.0,
        1 => -2.0,
        _ => 0.0,
    }
}

fn relation_weight(relation: &str) -> Option<(f64, &'static str)> {
    match relation {
        "sequel" => Some((3.0, "sequel to")),
        "same_collection" => Some((2.0, "same collection as")),
        "similar" => Some((1.5, "similar to")),
        _ => None,
    }
}

/// Scores every title in `titles` the user has neither watched nor rated:
/// (a) genres of watched titles, weighted by completion; (b) genres of rated
/// titles, +1/+2 for 4/5 stars and −1/−2 for 2/1; (c) a relation from a
/// watched (≥50%) or well-rated title. Returns the best [`LIST_LEN`] with a
/// positive score, best first (ties by id, so the result is deterministic).
pub fn recommend(
    titles: &HashMap<i64, TitleFact>,
    views: &[ViewFact],
    ratings: &[RatingFact],
    relations: &[RelationFact],
) -> Vec<Recommendation> {
    // Best completion per watched title: rewatching does not count double.
    let mut watched: HashMap<i64, f64> = HashMap::new();
    for v in views {
        let c = v.completion.clamp(0.0, 1.0);
        let e = watched.entry(v.title_id).or_insert(0.0);
        *e = e.max(c);
    }
    let rated: HashMap<i64, u8> = ratings.iter().map(|r| (r.title_id, r.stars)).collect();

    let mut affinity: BTreeMap<&str, f64> = BTreeMap::new();
    let genres_of = |id: i64| titles.get(&id).map(|t| t.genres.as_slice()).unwrap_or(&[]);
    for (&id, &completion) in &watched {
        for g in genres_of(id) {
            *affinity.entry(g).or_default() += completion;
        }
    }
    for (&id, &stars) in &rated {
        for g in genres_of(id) {
            *affinity.entry(g).or_default() += rating_weight(stars);
        }
    }

    let sources: HashSet<i64> = watched
        .iter()
        .filter(|&(_, &c)| c >= SOURCE_COMPLETION)
        .map(|(&id, _)| id)
        .chain(rated.iter().filter(|&(_, &s)| s >= 4).map(|(&id, _)| id))
        .collect();
    let known = |id: i64| watched.contains_key(&id) || rated.contains_key(&id);

    let mut related: HashMap<i64, (f64, Vec<String>)> = HashMap::new();
    let mut sorted_relations: Vec<&RelationFact> = relations.iter().collect();
    sorted_relations.sort_by_key(|r| (r.related_title_id, r.title_id, r.relation.clone()));
    for r in sorted_relations {
        if !sources.contains(&r.title_id) || known(r.related_title_id) {
            continue;
        }
        let Some((weight, phrase)) = relation_weight(&r.relation) else {
            continue;
        };
        let from = titles
            .get(&r.title_id)
            .map_or_else(|| format!("title {}", r.title_id), |t| t.title.clone());
        let e = related.entry(r.related_title_id).or_default();
        e.0 += weight;
        e.1.push(format!("{phrase} {from}"));
    }

    let mut out: Vec<Recommendation> = titles
        .values()
        .filter(|t| !known(t.title_id))
        .filter_map(|t| {
            let mut score = 0.0;
            let mut liked: Vec<(&str, f64)> = Vec::new();
            for g in &t.genres {
                let a = affinity.get(g.as_str()).copied().unwrap_or(0.0);
                score += a;
                if a > 0.0 {
                    liked.push((g, a));
                }
            }
            liked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let mut reasons: Vec<String> = Vec::new();
            if let Some((s, why)) = related.get(&t.title_id) {
                score += s;
                reasons.extend(why.iter().cloned());
            }
            reasons.extend(liked.iter().take(3).map(|(g, _)| format!("you like {g}")));
            (score > 0.0).then(|| Recommendation {
                title_id: t.title_id,
                title: t.title.clone(),
                score: (score * 1000.0).round() / 1000.0,
                reasons,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.title_id.cmp(&b.title_id))
    });
    out.truncate(LIST_LEN);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(items: &[(i64, &str, &[&str])]) -> HashMap<i64, TitleFact> {
        items
            .iter()
            .map(|&(id, name, genres)| {
                (
                    id,
                    TitleFact {
                        title_id: id,
                        title: name.into(),
                        genres: genres.iter().map(|g| (*g).to_owned()).collect(),
                    },
                )
            })
            .collect()
    }

    fn rel(from: i64, to: i64, relation: &str) -> RelationFact {
        RelationFact {
            title_id: from,
            related_title_id: to,
            relation: relation.into(),
        }
    }

    #[test]
    fn watched_genres_weighted_by_completion_and_watched_titles_excluded() {
        let titles = catalog(&[
            (1, "Alien", &["sci-fi", "horror"]),
            (2, "Notebook", &["romance"]),
            (3, "Arrival", &["sci-fi"]),
            (4, "Love Actually", &["romance"]),
        ]);
        let views = [
            ViewFact {
                title_id: 1,
                completion: 1.0,
            },
            ViewFact {
                title_id: 2,
                completion: 0.1,
            },
        ];
        let recs = recommend(&titles, &views, &[], &[]);
        let ids: Vec<i64> = recs.iter().map(|r| r.title_id).collect();
        assert_eq!(ids, [3, 4], "sci-fi (fully watched) beats romance (10%)");
        assert_eq!(recs[0].score, 1.0);
        assert_eq!(recs[1].score, 0.1);
        assert_eq!(recs[0].reasons, ["you like sci-fi"]);
    }

    #[test]
    fn low_ratings_penalize_and_high_ratings_boost_genres() {
        let titles = catalog(&[
            (1, "Saw", &["horror"]),
            (2, "Up", &["animation"]),
            (3, "It", &["horror"]),
            (4, "Coco", &["animation"]),
        ]);
        let views = [
            ViewFact {
                title_id: 1,
                completion: 1.0,
            },
            ViewFact {
                title_id: 2,
                completion: 1.0,
            },
        ];
        let ratings = [
            RatingFact {
                title_id: 1,
                stars: 1,
            },
            RatingFact {
                title_id: 2,
                stars: 5,
            },
        ];
        let recs = recommend(&titles, &views, &ratings, &[]);
        // horror: 1.0 − 2 < 0 → not recommended; animation: 1.0 + 2 = 3.
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].title_id, 4);
        assert_eq!(recs[0].score, 3.0);
    }

    #[test]
    fn relations_of_watched_or_well_rated_titles_count_with_reasons() {
        let titles = catalog(&[
            (1, "Matrix", &[]),
            (2, "Matrix Reloaded", &[]),
            (3, "Dark City", &[]),
            (4, "Bad Movie", &[]),
            (5, "Bad Movie 2", &[]),
            (6, "Rated Only", &[]),
            (7, "Cousin", &[]),
        ]);
        let views = [
            ViewFact {
                title_id: 1,
                completion: 0.9,
            },
            ViewFact {
                title_id: 4,
                completion: 0.2,
            },
        ];
        let ratings = [RatingFact {
            title_id: 6,
            stars: 4,
        }];
        let relations = [
            rel(1, 2, "sequel"),
            rel(1, 3, "similar"),
            rel(4, 5, "sequel"),
            rel(6, 7, "same_collection"),
            rel(1, 6, "similar"),
        ];
        let recs = recommend(&titles, &views, &ratings, &relations);
        let got: Vec<(i64, f64)> = recs.iter().map(|r| (r.title_id, r.score)).collect();
        // 5 is a sequel of a barely watched title; 6 is already rated.
        assert_eq!(got, [(2, 3.0), (7, 2.0), (3, 1.5)]);
        assert_eq!(recs[0].reasons, ["sequel to Matrix"]);
        assert_eq!(recs[1].reasons, ["same collection as Rated Only"]);
    }

    #[test]
    fn at_most_ten_best_first_ties_by_id() {
        let items: Vec<(i64, String)> = (1..=30).map(|i| (i, format!("t{i}"))).collect();
        let mut titles = HashMap::new();
        for (id, name) in &items {
            titles.insert(
                *id,
                TitleFact {
                    title_id: *id,
                    title: name.clone(),
                    genres: vec!["drama".into()],
                },
            );
        }
        let views = [ViewFact {
            title_id: 30,
            completion: 1.0,
        }];
        let recs = recommend(&titles, &views, &[], &[]);
        assert_eq!(recs.len(), LIST_LEN);
        let ids: Vec<i64> = recs.iter().map(|r| r.title_id).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn no_history_no_recommendations() {
        let titles = catalog(&[(1, "A", &["x"])]);
        assert!(recommend(&titles, &[], &[], &[]).is_empty());
    }
}
