//! Plausible catalog and account data from built-in word lists (Brazilian
//! flavour). Pure: everything is a function of the RNG, so it is unit-tested.

use crate::rng::Rng;
use serde_json::{Value, json};

const FIRST_NAMES: &[&str] = &[
    "Ana",
    "João",
    "Maria",
    "Pedro",
    "Luíza",
    "Gabriel",
    "Júlia",
    "Lucas",
    "Beatriz",
    "Rafael",
    "Camila",
    "Thiago",
    "Larissa",
    "Mateus",
    "Fernanda",
    "Caio",
    "Letícia",
    "Bruno",
    "Isabela",
    "Gustavo",
    "Mariana",
    "Felipe",
    "Aline",
    "Rodrigo",
    "Patrícia",
    "Vinícius",
    "Renata",
    "André",
    "Helena",
    "Otávio",
    "Débora",
    "Márcio",
    "Cecília",
    "Heitor",
    "Valentina",
    "Tomás",
];
const SURNAMES: &[&str] = &[
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Mendes",
    "Araújo",
    "Cavalcanti",
    "Teixeira",
    "Monteiro",
    "Barros",
    "Freitas",
    "Cardoso",
];
const MASC_NOUNS: &[&str] = &[
    "Segredo",
    "Caminho",
    "Silêncio",
    "Rio",
    "Vento",
    "Destino",
    "Herdeiro",
    "Samba",
    "Farol",
    "Último Verão",
    "Jogo",
    "Retrato",
    "Pacto",
    "Labirinto",
    "Tesouro",
    "Eco",
];
const FEM_NOUNS: &[&str] = &[
    "Cidade",
    "Noite",
    "Estrada",
    "Promessa",
    "Ilha",
    "Fronteira",
    "Memória",
    "Travessia",
    "Canção",
    "Sombra",
    "Herança",
    "Maré",
    "Casa",
    "Febre",
    "Lenda",
    "Viagem",
];
const PLACES: &[&str] = &[
    "do Sertão",
    "de Salvador",
    "do Recife",
    "de Ouro Preto",
    "da Amazônia",
    "de Copacabana",
    "do Pantanal",
    "de Porto Alegre",
    "da Serra",
    "do Cerrado",
    "de Manaus",
    "de Olinda",
    "da Lapa",
    "de Belém",
    "do Pelourinho",
    "de Paraty",
];
const DOC_SUBJECTS: &[&str] = &[
    "Amazônia",
    "Pantanal",
    "Carnaval",
    "Futebol",
    "Bossa Nova",
    "Capoeira",
    "Mata Atlântica",
    "Sertão",
    "Cordel",
    "Oceanos",
    "Chapada Diamantina",
    "Lençóis Maranhenses",
    "Café",
];
const DOC_SUBTITLES: &[&str] = &[
    "Vozes da Floresta",
    "Uma História Viva",
    "O Ritmo de um Povo",
    "Além do Horizonte",
    "Raízes",
    "O Último Refúgio",
    "Memórias de um País",
    "Por Trás da Festa",
];
const SUBJECTS: &[&str] = &[
    "Uma professora de Belém",
    "Um pescador aposentado",
    "Duas irmãs afastadas",
    "Um jovem músico",
    "Uma detetive de São Paulo",
    "Um grupo de amigos de infância",
    "Uma médica recém-formada",
    "Um caminhoneiro",
    "Uma família do interior",
    "Um jornalista desempregado",
    "Uma chef de cozinha",
    "Um ex-jogador de futebol",
];
const ACTIONS: &[&str] = &[
    "descobre um segredo de família",
    "parte em busca de um tesouro perdido",
    "precisa salvar a pousada da família",
    "investiga um desaparecimento misterioso",
    "reencontra um amor do passado",
    "enfrenta uma poderosa construtora",
    "tenta reunir a antiga banda",
    "foge de um passado perigoso",
    "herda uma fazenda cheia de mistérios",
    "organiza o maior bloco de Carnaval da cidade",
];
const TWISTS: &[&str] = &[
    "e nada será como antes",
    "enquanto uma tempestade se aproxima",
    "mas o tempo está contra todos",
    "sem saber em quem confiar",
    "e descobre que a verdade tem muitas versões",
    "às vésperas do Carnaval",
    "no meio de uma eleição acirrada",
    "e precisa decidir de que lado está",
];
const DOC_ANGLES: &[&str] = &[
    "Um retrato íntimo de quem vive e preserva",
    "Uma viagem pelas histórias e personagens de",
    "Imagens inéditas e depoimentos revelam",
    "Cinco anos de filmagens acompanham",
];
pub const GENRES: &[&str] = &[
    "drama",
    "comedia",
    "acao",
    "suspense",
    "terror",
    "romance",
    "ficcao-cientifica",
    "animacao",
    "crime",
    "aventura",
    "fantasia",
    "musical",
];
const DOC_GENRES: &[&str] = &["natureza", "historia", "musica", "esporte", "sociedade"];
const CATEGORIES: &[&str] = &[
    "nacional",
    "premiado",
    "em-alta",
    "classico",
    "familia",
    "lancamento",
    "cult",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Movie,
    Series,
    Documentary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Movie => "movie",
            Self::Series => "series",
            Self::Documentary => "documentary",
        }
    }

    /// Typical runtime in seconds, for plausible `seconds_watched`.
    pub fn runtime_secs(self) -> u32 {
        match self {
            Self::Movie => 110 * 60,
            Self::Series => 45 * 60,
            Self::Documentary => 85 * 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TitleSpec {
    pub title: String,
    pub description: String,
    pub kind: Kind,
    pub year: i32,
    pub directors: Vec<String>,
    pub cast: Vec<String>,
    pub genres: Vec<String>,
    pub categories: Vec<String>,
    /// `(number, episodes)`, series only.
    pub seasons: Vec<(u32, u32)>,
    /// 1–5: how well this title tends to be rated.
    pub quality: u8,
}

impl TitleSpec {
    /// The `POST /v1/titles` body.
    pub fn body(&self) -> Value {
        json!({
            "title": self.title,
            "description": self.description,
            "kind": self.kind.as_str(),
            "year": self.year,
            "directors": self.directors,
            "cast": self.cast,
            "genres": self.genres,
            "categories": self.categories,
            "seasons": self.seasons.iter()
                .map(|&(number, episodes)| json!({"number": number, "episodes": episodes}))
                .collect::<Vec<_>>(),
        })
    }
}

/// A relation between two entries of the generated catalog, by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationSpec {
    pub from: usize,
    pub to: usize,
    pub relation: &'static str,
}

pub struct Catalog {
    pub titles: Vec<TitleSpec>,
    pub relations: Vec<RelationSpec>,
}

pub fn person(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(SURNAMES))
}

fn movie_name(rng: &mut Rng) -> String {
    if rng.chance(0.5) {
        format!("O {} {}", rng.pick(MASC_NOUNS), rng.pick(PLACES))
    } else {
        format!("A {} {}", rng.pick(FEM_NOUNS), rng.pick(PLACES))
    }
}

/// `n` titles (about 55% movies, 30% series, 15% documentaries), some movies
/// with a sequel, plus sequel/prequel/same_collection/similar relations.
pub fn catalog(rng: &mut Rng, n: usize) -> Catalog {
    let mut titles: Vec<TitleSpec> = Vec::with_capacity(n);
    let mut relations = Vec::new();
    let mut used = std::collections::HashSet::new();
    while titles.len() < n {
        let idx = titles.len();
        // A sequel of the previous movie, when there is room for it.
        if let Some(prev) = titles.last().filter(|t| t.kind == Kind::Movie)
            && !prev.title.ends_with(" 2")
            && rng.chance(0.2)
        {
            let mut sequel = prev.clone();
            sequel.title = format!("{} 2", prev.title);
            sequel.year = (prev.year + rng.range(1, 3) as i32).min(2025);
            sequel.description = format!("A continuação de {}: {}", prev.title, description(rng));
            sequel.cast.truncate(2);
            sequel.cast.push(person(rng));
            sequel.quality = prev.quality.saturating_sub(1).max(1);
            used.insert(sequel.title.clone());
            titles.push(sequel);
            relations.push(RelationSpec {
                from: idx - 1,
                to: idx,
                relation: "sequel",
            });
            relations.push(RelationSpec {
                from: idx,
                to: idx - 1,
                relation: "prequel",
            });
            relations.push(RelationSpec {
                from: idx - 1,
                to: idx,
                relation: "same_collection",
            });
            continue;
        }
        let roll = rng.unit();
        let kind = if roll < 0.55 {
            Kind::Movie
        } else if roll < 0.85 {
            Kind::Series
        } else {
            Kind::Documentary
        };
        let mut title = match kind {
            Kind::Documentary => format!("{}: {}", rng.pick(DOC_SUBJECTS), rng.pick(DOC_SUBTITLES)),
            _ => movie_name(rng),
        };
        // Distinct names within a run; a roman numeral would read as a sequel.
        let mut attempt = 0;
        while used.contains(&title) {
            attempt += 1;
            title = match kind {
                Kind::Documentary => {
                    format!(
                        "{}: {} ({attempt})",
                        rng.pick(DOC_SUBJECTS),
                        rng.pick(DOC_SUBTITLES)
                    )
                }
                _ if attempt < 5 => movie_name(rng),
                _ => format!("{} ({attempt})", movie_name(rng)),
            };
        }
        used.insert(title.clone());
        let (years, genres) = match kind {
            Kind::Movie => ((1965, 2025), GENRES),
            Kind::Series => ((1995, 2025), GENRES),
            Kind::Documentary => ((1985, 2025), DOC_GENRES),
        };
        let description = match kind {
            Kind::Documentary => {
                format!(
                    "{} {}.",
                    rng.pick(DOC_ANGLES),
                    title.split(':').next().unwrap_or(&title)
                )
            }
            _ => description(rng),
        };
        let seasons = if kind == Kind::Series {
            (1..=rng.range(1, 6) as u32)
                .map(|number| (number, rng.range(6, 13) as u32))
                .collect()
        } else {
            Vec::new()
        };
        let (n_genres, n_categories) = (rng.range(1, 3) as usize, rng.range(0, 2) as usize);
        let cast_size = if kind == Kind::Documentary {
            1
        } else {
            rng.range(3, 6) as usize
        };
        titles.push(TitleSpec {
            title,
            description,
            kind,
            year: rng.range(years.0, years.1) as i32,
            directors: (0..rng.range(1, 2)).map(|_| person(rng)).collect(),
            cast: (0..cast_size).map(|_| person(rng)).collect(),
            genres: rng
                .pick_distinct(genres, n_genres)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            categories: rng
                .pick_distinct(CATEGORIES, n_categories)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            seasons,
            quality: rng.range(1, 5) as u8,
        });
    }
    // "similar": pairs sharing a genre, a few per title.
    for i in 0..titles.len() {
        for _ in 0..2 {
            let j = rng.below(titles.len());
            if j != i
                && titles[i]
                    .genres
                    .iter()
                    .any(|g| titles[j].genres.contains(g))
                && !relations.iter().any(|r| r.from == i && r.to == j)
            {
                relations.push(RelationSpec {
                    from: i,
                    to: j,
                    relation: "similar",
                });
            }
        }
    }
    Catalog { titles, relations }
}

fn description(rng: &mut Rng) -> String {
    format!(
        "{} {} {}.",
        rng.pick(SUBJECTS),
        rng.pick(ACTIONS),
        rng.pick(TWISTS)
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    pub name: String,
    pub email: String,
    pub password: String,
    pub cpf: String,
}

impl UserSpec {
    pub fn body(&self) -> Value {
        json!({"name": self.name, "email": self.email, "password": self.password, "cpf": self.cpf})
    }
}

/// A user; `tag` makes the email unique per run, so running twice adds users.
pub fn user(rng: &mut Rng, tag: &str, i: usize) -> UserSpec {
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(SURNAMES);
    UserSpec {
        name: format!("{first} {last}"),
        email: format!(
            "{}.{}.{tag}{i}@demo.polystream.local",
            ascii_slug(first),
            ascii_slug(last)
        ),
        password: format!("demo-{tag}-{}", rng.range(100_000, 999_999)),
        cpf: cpf(rng),
    }
}

/// A CPF valid by its two check digits (mod 11), never all one digit.
pub fn cpf(rng: &mut Rng) -> String {
    loop {
        let mut d: Vec<u32> = (0..9).map(|_| rng.below(10) as u32).collect();
        if d.iter().all(|&x| x == d[0]) {
            continue;
        }
        for n in [9usize, 10] {
            let sum: u32 = (0..n).map(|i| d[i] * (n as u32 + 1 - i as u32)).sum();
            let r = (sum * 10) % 11;
            d.push(if r == 10 { 0 } else { r });
        }
        return d.iter().map(|x| char::from(b'0' + *x as u8)).collect();
    }
}

/// Lower-case ASCII for email local parts: "Luíza" → "luiza".
pub fn ascii_slug(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let c = match c.to_lowercase().next().unwrap_or(c) {
                'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
                'é' | 'ê' | 'è' => 'e',
                'í' | 'î' => 'i',
                'ó' | 'ô' | 'õ' | 'ö' => 'o',
                'ú' | 'ü' => 'u',
                'ç' => 'c',
                other => other,
            };
            c.is_ascii_alphanumeric().then_some(c)
        })
        .collect()
}

pub fn subscription(rng: &mut Rng) -> (Value, &'static str) {
    let plan = *rng.pick(&["basic", "standard", "standard", "premium"]);
    let status = if rng.chance(0.9) {
        "active"
    } else {
        *rng.pick(&["past_due", "cancelled"])
    };
    (json!({"plan": plan, "status": status}), plan)
}

pub fn payment(rng: &mut Rng, plan: &str) -> Value {
    let amount = match plan {
        "basic" => 1990,
        "standard" => 3990,
        _ => 5590,
    };
    let status = if rng.chance(0.92) {
        "approved"
    } else {
        *rng.pick(&["pending", "declined"])
    };
    json!({
        "amount_cents": amount,
        "currency": "BRL",
        "method": rng.pick(&["pix", "pix", "credit_card", "debit_card", "boleto"]),
        "status": status,
    })
}

pub fn preferences(rng: &mut Rng) -> Value {
    json!({
        "language": rng.pick(&["pt-BR", "pt-BR", "pt-BR", "en-US", "es-AR"]),
        "notifications": rng.chance(0.7),
        "theme": rng.pick(&["light", "dark", "dark", "system"]),
    })
}

pub fn view(rng: &mut Rng, title_id: i64, kind: Kind) -> Value {
    let pct = if rng.chance(0.5) {
        100.0
    } else {
        rng.range(3, 99) as f64
    };
    let secs = (f64::from(kind.runtime_secs()) * pct / 100.0) as u32;
    json!({"title_id": title_id, "seconds_watched": secs, "position_pct": pct})
}

/// Stars around the title's quality, off by at most one.
pub fn stars(rng: &mut Rng, quality: u8) -> u8 {
    (i64::from(quality) + rng.range(-1, 1)).clamp(1, 5) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use polystream_common::events::is_cpf;

    #[test]
    fn cpfs_are_valid_by_check_digits() {
        let mut r = Rng::new(11);
        for _ in 0..2_000 {
            let c = cpf(&mut r);
            assert!(is_cpf(&c), "{c}");
        }
        // A known valid one, computed by hand, to pin the algorithm.
        assert!(is_cpf("52998224725"));
    }

    #[test]
    fn users_have_unique_plausible_emails_and_long_passwords() {
        let mut r = Rng::new(5);
        let users: Vec<UserSpec> = (0..200).map(|i| user(&mut r, "t1", i)).collect();
        let mut emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
        emails.sort_unstable();
        emails.dedup();
        assert_eq!(emails.len(), users.len());
        for u in &users {
            let (local, domain) = u.email.split_once('@').unwrap();
            assert!(
                local.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'),
                "{}",
                u.email
            );
            assert_eq!(domain, "demo.polystream.local");
            assert!(u.password.len() >= 8);
            assert!(is_cpf(&u.cpf));
        }
        assert_eq!(ascii_slug("Luíza Araújo"), "luizaaraujo");
    }

    #[test]
    fn catalog_is_valid_and_deterministic_under_a_seed() {
        let a = catalog(&mut Rng::new(9), 60);
        let b = catalog(&mut Rng::new(9), 60);
        let c = catalog(&mut Rng::new(10), 60);
        assert_eq!(a.titles, b.titles);
        assert_eq!(a.relations, b.relations);
        assert_ne!(a.titles, c.titles);
        assert_eq!(a.titles.len(), 60);
        let mut names: Vec<&str> = a.titles.iter().map(|t| t.title.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 60, "titles are distinct");
        for t in &a.titles {
            assert!((1888..=2100).contains(&t.year) && t.year <= 2025, "{t:?}");
            assert!(!t.genres.is_empty() && !t.directors.is_empty());
            assert!((1..=5).contains(&t.quality));
            assert_eq!(t.kind == Kind::Series, !t.seasons.is_empty(), "{t:?}");
            assert!(t.seasons.iter().all(|&(n, e)| n >= 1 && e >= 1));
            assert!(t.description.chars().count() <= 5000);
        }
        for r in &a.relations {
            assert_ne!(r.from, r.to);
            assert!(r.from < 60 && r.to < 60);
            assert!(["similar", "sequel", "prequel", "same_collection"].contains(&r.relation));
        }
        assert!(a.relations.iter().any(|r| r.relation == "similar"));
        let kinds: std::collections::HashSet<&str> =
            a.titles.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds.len(), 3, "movies, series and documentaries");
    }

    #[test]
    fn views_and_stars_are_in_range() {
        let mut r = Rng::new(2);
        for q in 1..=5 {
            for _ in 0..100 {
                assert!((1..=5).contains(&stars(&mut r, q)));
                let v = view(&mut r, 7, Kind::Series);
                let pct = v["position_pct"].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&pct));
                assert!(v["seconds_watched"].as_u64().unwrap() <= 45 * 60);
            }
        }
    }
}
