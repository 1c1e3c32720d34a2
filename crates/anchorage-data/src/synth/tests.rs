//! The world written to disk: deterministic, answers right, yes/no balanced, fully tokenisable.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::text::{read_records, tokenize_record, TextTokenizer};
use crate::{Manifest, Template};

fn small() -> SynthOptions {
    SynthOptions {
        train: 24,
        eval: 12,
        seed: 7,
        size: 64,
        ..SynthOptions::default()
    }
}

fn read_dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_images() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    write_world(a.path(), &small()).unwrap();
    write_world(b.path(), &small()).unwrap();
    let (fa, fb) = (read_dir_bytes(a.path()), read_dir_bytes(b.path()));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{k} differs between two runs with the same seed");
    }
    assert!(fa.contains_key("images/train/000023.png") && fa.contains_key("eval/questions.jsonl"));
    write_world(c.path(), &SynthOptions { seed: 8, ..small() }).unwrap();
    let fc = read_dir_bytes(c.path());
    assert_ne!(fa["images/train/000000.png"], fc["images/train/000000.png"]);
}

#[test]
fn every_question_has_the_right_answer_for_its_image_and_yes_no_is_balanced() {
    let dir = tempfile::tempdir().unwrap();
    let summary = write_world(dir.path(), &small()).unwrap();
    let scenes: Vec<SceneEntry> = jsonl(&dir.path().join(files::SCENES));
    let by_image: BTreeMap<&str, &Scene> = scenes.iter().map(|e| (e.image.as_str(), &e.scene)).collect();
    let questions: Vec<EvalQuestion> = jsonl(&dir.path().join(files::QUESTIONS));
    let answers: Vec<EvalAnswer> = jsonl(&dir.path().join(files::ANSWERS));
    assert_eq!(questions.len(), 12 * QUESTIONS_PER_EVAL_IMAGE);
    assert_eq!(summary.yes, 12);
    assert_eq!(summary.no, 12);
    for (q, a) in questions.iter().zip(&answers) {
        assert_eq!(q.question_id, a.question_id);
        let (question, suffix) = q.text.split_once('\n').unwrap();
        assert_eq!(suffix, SHORT_ANSWER_SUFFIX);
        // The image on disk holds the scene: its centre pixel has the shape's colour.
        let img = image::open(dir.path().join(files::IMAGES).join(&q.image))
            .unwrap()
            .to_rgb8();
        let scene = by_image[q.image.as_str()];
        assert_eq!(img.get_pixel(scene.cx as u32, scene.cy as u32).0, scene.fill);
        assert_eq!(answer_for(scene, question).as_deref(), Some(a.answer.as_str()), "{q:?}");
    }
    // Training conversations: right answers, presence questions balanced.
    let records = read_records(&dir.path().join(files::IFT)).unwrap();
    let (mut yes, mut no) = (0, 0);
    for r in records.iter().map(|r| r.as_ref().unwrap()) {
        assert!(r.conversations[0].value.starts_with("<image>\n"));
        let scene = by_image[r.image.as_deref().unwrap()];
        for pair in r.conversations.chunks(2) {
            let human = pair[0].value.trim_start_matches("<image>\n");
            if let Some((question, SHORT_ANSWER_SUFFIX)) = human.split_once('\n') {
                assert_eq!(
                    answer_for(scene, question).as_deref(),
                    Some(pair[1].value.as_str()),
                    "{human}"
                );
                yes += usize::from(pair[1].value == "yes");
                no += usize::from(pair[1].value == "no");
            }
        }
    }
    assert!(yes + no > 10 && yes.abs_diff(no) <= 1, "yes {yes} no {no}");
    for m in [files::PRETRAIN_MANIFEST, files::IFT_MANIFEST] {
        let path = dir.path().join(m);
        let manifest = Manifest::load(&path).unwrap();
        let root = manifest.data_root(&path, None).unwrap();
        assert_eq!(manifest.sample_count(Some(&root)).unwrap().count, 24);
    }
}

#[test]
fn the_tokenizer_covers_the_world_and_matches_llava_round_lengths() {
    let dir = tempfile::tempdir().unwrap();
    write_world(dir.path(), &small()).unwrap();
    let tok = TextTokenizer::from_file(&dir.path().join(files::TOKENIZER)).unwrap();
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!((tok.bos_id(), tok.pad_id()), (Some(1), 0));
    assert_eq!(tok.encode("</s>", false).unwrap(), vec![2]);
    // Lower-cased before anything else: every capitalisation of a question is the same tokens.
    let lower = tok.encode("is there not a teal triangle in the image?", true).unwrap();
    for q in ["Is there not a teal triangle in the image?", "IS THERE NOT A TEAL TRIANGLE IN THE IMAGE?", "Is There Not A Teal Triangle In The Image?"] {
        assert_eq!(tok.encode(q, true).unwrap(), lower, "{q}");
    }
    for word in ["▁red", "▁green", "▁teal", "▁circle", "▁triangle", "▁rectangle", "▁yes", "▁no"] {
        assert_eq!(tok.encode(word.trim_start_matches('▁'), false).unwrap().len(), 1, "{word} is one token");
    }
    let is_byte = |id: &i64| (3..259).contains(id);
    let questions: Vec<EvalQuestion> = jsonl(&dir.path().join(files::QUESTIONS));
    for q in &questions {
        let ids = tok.encode(&q.text, true).unwrap();
        assert!(!ids.iter().any(is_byte), "{:?} falls back to bytes: {ids:?}", q.text);
    }
    for (file, template) in [(files::PRETRAIN, Template::Plain), (files::IFT, Template::VicunaV1)] {
        for r in read_records(&dir.path().join(file))
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
        {
            let s = tokenize_record(&r, template, &tok, 2048)
                .map_err(|e| format!("{e:?}"))
                .unwrap();
            assert!(!s.mismatch, "{} {}: tokenization mismatch", file, r.id);
            assert_eq!(s.image_count(), 1);
            assert!(
                !s.input_ids.iter().any(is_byte),
                "{}: byte fallback in {:?}",
                r.id,
                s.input_ids
            );
        }
    }
    // Deterministic: training again gives the same file.
    let again = train_tokenizer(&TokenizerOptions::default()).unwrap();
    assert_eq!(
        again.json,
        std::fs::read_to_string(dir.path().join(files::TOKENIZER)).unwrap()
    );
}

#[test]
fn conversation_rounds_follow_the_option_and_the_default_world_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    write_world(dir.path(), &SynthOptions { rounds: (6, 8), ..small() }).unwrap();
    let records = read_records(&dir.path().join(files::IFT)).unwrap();
    let rounds: Vec<usize> = records.iter().map(|r| r.as_ref().unwrap().conversations.len() / 2).collect();
    assert!(rounds.iter().all(|r| (6..=8).contains(r)), "{rounds:?}");
    assert!(rounds.contains(&6) && rounds.contains(&8), "{rounds:?}");
    // The default draws 2 to 4 rounds exactly as `conversation_record` always has (seeded records
    // of existing worlds do not move).
    let mut a = crate::SplitMix64::for_epoch(3, 4, 5);
    let mut b = a.clone();
    let scene = Scene::sample_with(&mut crate::SplitMix64::new(9), Shape::Circle, Colour::Teal, 64);
    for _ in 0..20 {
        let plain = conversation_record(&mut a, "x".into(), "i".into(), &scene, &mut YesNo::default());
        let with = conversation_record_with(&mut b, "x".into(), "i".into(), &scene, &mut YesNo::default(), (2, 4));
        assert_eq!(plain, with);
    }
}
