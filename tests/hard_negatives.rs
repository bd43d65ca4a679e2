//! `train::hard_negatives`: each synthetic face caption's contrast says exactly one attribute
//! the other way round, judged by a keyword reader that is checked against the renderer's own
//! attributes first. No GPU needed.

use std::collections::BTreeMap;
use std::path::Path;

use ratlip::data::synth::{self, Kind, Options};
use ratlip::train::data::Dataset;
use ratlip::rng::Rng;
use ratlip::train::hard_negatives::{contrast_of, contrasts, flippable, pick_flip, Flip};

/// What a caption says about mood (smiling?), glasses and beard, where it says it.
#[derive(Debug, PartialEq, Clone, Copy)]
struct Said {
    smiling: Option<bool>,
    glasses: Option<bool>,
    beard: Option<bool>,
}

fn read(caption: &str) -> Said {
    let words: Vec<String> = caption.split(|c: char| !(c.is_alphanumeric() || c == '-')).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let before = |i: usize| if i > 0 { words[i - 1].as_str() } else { "" };
    let mut s = Said { smiling: None, glasses: None, beard: None };
    for (i, w) in words.iter().enumerate() {
        match w.as_str() {
            "smiling" | "grinning" | "happy" | "cheerful" => s.smiling = Some(true),
            "sad" | "unhappy" | "frowning" => s.smiling = Some(false),
            "glasses" | "spectacles" | "eyeglasses" => s.glasses = Some(!matches!(before(i), "no" | "without")),
            "bearded" => s.beard = Some(true),
            "clean-shaven" => s.beard = Some(false),
            "beard" => s.beard = Some(before(i) != "no"),
            _ => {}
        }
    }
    s
}

fn flipped(s: Said, f: Flip) -> Said {
    let not = |x: Option<bool>| x.map(|v| !v);
    match f {
        Flip::Mood => Said { smiling: not(s.smiling), ..s },
        Flip::Glasses => Said { glasses: not(s.glasses), ..s },
        Flip::Beard => Said { beard: not(s.beard), ..s },
    }
}

#[test]
fn known_answers() {
    let cases = [
        ("a smiling young woman with long red hair and glasses", Flip::Mood, Some("a frowning young woman with long red hair and glasses")),
        // The renderer names no glasses there when there are none: no faithful contrast.
        ("a smiling young woman with long red hair and glasses", Flip::Glasses, None),
        ("She is young, red hair, no glasses", Flip::Glasses, Some("She is young, red hair, wearing glasses")),
        ("He is old, bald, wearing spectacles", Flip::Glasses, Some("He is old, bald, no glasses")),
        ("a man without glasses", Flip::Glasses, Some("a man wearing glasses")),
        ("this man is old and sad, with a thick beard, glasses on", Flip::Beard, None),
        ("this man is old and sad, with a thick beard, glasses on", Flip::Glasses, None),
        ("this man is old and sad, with a thick beard, glasses on", Flip::Mood, Some("this man is old and happy, with a thick beard, glasses on")),
        ("a young clean-shaven man looking unhappy", Flip::Beard, Some("a young bearded man looking unhappy")),
        ("a young clean-shaven man looking unhappy", Flip::Mood, Some("a young clean-shaven man looking happy")),
        ("Happy old lady", Flip::Mood, Some("Sad old lady")),
        ("an unhappy elderly man", Flip::Mood, Some("a happy elderly man")),
        ("A happy man", Flip::Mood, Some("A sad man")),
    ];
    for (caption, f, want) in cases {
        assert_eq!(contrast_of(caption, f).as_deref(), want, "{f:?} of {caption:?}");
    }
    assert_eq!(contrast_of("a young man with brown hair", Flip::Glasses), None);
    assert_eq!(flippable("this bird has a red crown and a short beak"), vec![]);
    assert_eq!(pick_flip("this bird has a red crown and a short beak", 7), None);
    assert_eq!(flippable("a happy bearded man, wearing glasses"), vec![Flip::Mood, Flip::Glasses, Flip::Beard]);
    assert_eq!(flippable("a man with glasses and a beard"), vec![]);
    // `pick` chooses among what the caption names, modulo their number.
    assert_eq!(pick_flip("a happy man, wearing glasses", 1), Some(Flip::Glasses));
    assert_eq!(pick_flip("a happy man, wearing glasses", 2), Some(Flip::Mood));
    // A step's contrasts: one draw per caption (with a contrast or not), rows without one left
    // out, each the caption with the drawn attribute reversed.
    let captions = ["a happy man, wearing glasses", "this bird has a red crown and a short beak", "A happy man"];
    let got = contrasts(captions, &mut Rng::new(5));
    let mut draws = Rng::new(5);
    let want: Vec<(usize, Flip, String)> = captions
        .iter()
        .enumerate()
        .filter_map(|(row, c)| {
            let flip = pick_flip(c, draws.next_u64())?;
            Some((row, flip, contrast_of(c, flip)?))
        })
        .collect();
    assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(got, want);
    assert_eq!(got[1].2, "A sad man");
}

fn words(caption: &str) -> Vec<String> {
    caption.split(|c: char| !(c.is_alphanumeric() || c == '-')).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Every caption of 1000 rendered faces: the reader agrees with the renderer's attributes; each
/// contrast reads as the caption with exactly that attribute reversed, contrasting twice reads
/// as the caption again, and every pair of neighbouring words in a contrast also occurs in some
/// real caption (a contrast worded as no caption is could be spotted without the image).
#[test]
fn every_faces_caption_contrasts_in_one_attribute() {
    let dir = std::env::temp_dir().join(format!("ratlip_hard_negatives_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    synth::write_dataset(&Options { kind: Kind::Faces, count: 1000, size: 16, seed: 3, out: dir.clone(), threads: 2 }, &|_| {}).unwrap();
    let attrs: BTreeMap<String, serde_json::Value> = std::fs::read_to_string(dir.join("attributes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (Path::new(v["file"].as_str().unwrap()).file_stem().unwrap().to_string_lossy().into_owned(), v))
        .collect();
    let data = Dataset::open(&dir).unwrap();
    let pairs_of = |c: &str| -> Vec<(String, String)> {
        let w = words(c);
        w.windows(2).map(|p| (p[0].clone(), p[1].clone())).collect()
    };
    let real: std::collections::BTreeSet<(String, String)> = data.items.iter().flat_map(|i| i.captions.iter().flat_map(|c| pairs_of(c))).collect();
    let (mut captions, mut with_contrast, mut per_flip) = (0, 0, BTreeMap::new());
    for item in &data.items {
        let a = &attrs[&item.key];
        for c in &item.captions {
            captions += 1;
            let said = read(c);
            // The reader is right about what the caption says.
            assert!(said.smiling.is_none_or(|s| s == (a["expression"] == "smiling")), "mood of {c:?} vs {a}");
            assert!(said.glasses.is_none_or(|g| g == a["glasses"].as_bool().unwrap()), "glasses of {c:?} vs {a}");
            assert!(said.beard.is_none_or(|b| b == a["beard"].as_bool().unwrap()), "beard of {c:?} vs {a}");
            let flips = flippable(c);
            with_contrast += usize::from(!flips.is_empty());
            for f in flips {
                let n = contrast_of(c, f).unwrap();
                assert_ne!(&n, c);
                assert_eq!(read(&n), flipped(said, f), "{f:?}: {c:?} → {n:?}");
                assert_eq!(read(&contrast_of(&n, f).unwrap()), said, "{f:?} twice: {c:?} → {n:?}");
                for p in pairs_of(&n) {
                    assert!(real.contains(&p), "{f:?}: {c:?} → {n:?}: no caption says {:?}", format!("{} {}", p.0, p.1));
                }
                *per_flip.entry(format!("{f:?}")).or_insert(0) += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{with_contrast} of {captions} captions have a contrast; by attribute {per_flip:?}");
    // Nine of the renderer's ten caption templates name the mood, glasses or a beard; the
    // close-up names none of them.
    assert_eq!(with_contrast * 10, captions * 9, "{with_contrast} of {captions} captions have a contrast");
    assert!(per_flip.len() == 3, "{per_flip:?}");
}
