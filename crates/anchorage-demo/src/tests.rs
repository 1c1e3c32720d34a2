//! Saved towers reload through the real loaders with the same outputs; short training lowers
//! the loss; `ensure_towers` reuses what it trained.

use std::path::Path;

use anchorage_data::synth::{train_tokenizer, TokenizerOptions};
use anchorage_data::text::TextTokenizer;
use anchorage_vision::{load_clip_vision_with, ClipVisionConfig, LoadOptions, VisionRequest};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::DType;

use crate::llm::{lm_stream_batch, HELD_OUT_STREAM as LM_HELD_OUT};
use crate::vision::{vision_batch, HELD_OUT_STREAM};
use crate::*;

type A = Autodiff<Flex>;

fn tiny_vision(steps: usize) -> VisionSpec {
    VisionSpec {
        config: ClipVisionConfig::new(32, 8, 32, 64, 2, 2),
        train: TrainSpec {
            steps,
            batch: 16,
            lr: 3e-3,
            warmup: 3,
            weight_decay: 0.0,
            slices: 2,
        },
    }
}

fn small_tokenizer(dir: &Path) -> (TextTokenizer, String) {
    let opts = TokenizerOptions {
        scenes: 400,
        ..TokenizerOptions::default()
    };
    let trained = train_tokenizer(&opts).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, &trained.json).unwrap();
    (TextTokenizer::from_file(&path).unwrap(), trained.json)
}

fn tiny_llm(vocab: usize, steps: usize) -> LlmSpec {
    let mut spec = LlmSpec::for_vocab(vocab);
    spec.config.hidden_size = 32;
    spec.config.intermediate_size = 64;
    spec.config.num_hidden_layers = 1;
    spec.config.num_attention_heads = 2;
    spec.config.num_key_value_heads = 1;
    spec.config.head_dim = 16;
    spec.train = TrainSpec {
        steps,
        batch: 4,
        lr: 5e-3,
        warmup: 3,
        weight_decay: 0.0,
        slices: 2,
    };
    spec.max_len = 160;
    spec
}

fn max_diff<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn saved_vision_tower_reloads_with_zero_missing_keys_and_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let spec = tiny_vision(2);
    let (probe, _) = train_vision::<A>(&spec, 1, &device).unwrap();
    save_clip_vision(dir.path(), &spec.config, &probe.tower).unwrap();
    // The header uses the Hub's names; the loader checks every key (zero missing) and shape.
    let (config, loaded) = load_clip_vision_with::<Flex>(dir.path(), &device, LoadOptions::default()).unwrap();
    assert_eq!(config, spec.config);
    let batch = vision_batch::<Flex>(1, HELD_OUT_STREAM, 0, 3, 32, 8, &device);
    let request = VisionRequest::select(-2).with_cls_attention(0).with_all_hidden_states();
    let a = probe.tower.forward(batch.pixels.clone(), &request).unwrap();
    let b = loaded.forward(batch.pixels, &request).unwrap();
    for (x, y) in a.hidden_states.into_iter().zip(b.hidden_states) {
        assert!(max_diff(x, y) < 1e-6);
    }
    assert!(max_diff(a.cls_attention[0].1.clone(), b.cls_attention[0].1.clone()) < 1e-6);
    let processor =
        anchorage_data::ClipImageProcessor::from_preprocessor_config(&dir.path().join(PREPROCESSOR)).unwrap();
    assert_eq!(processor.crop_size(), 32);
    let names = anchorage_data::image::tensor_names(&dir.path().join(WEIGHTS)).unwrap();
    assert!(names.iter().all(|n| n.starts_with("vision_model.")), "{names:?}");
    assert_eq!(names.len(), anchorage_vision::expected_tensors(&config).len());
}

#[test]
fn saved_llm_reloads_with_zero_missing_keys_and_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let (tok, json) = small_tokenizer(dir.path());
    let spec = tiny_llm(tok.vocab_size(), 2);
    let (llm, _) = train_llm::<A>(&spec, &tok, 1, &device).unwrap();
    let out = dir.path().join("llm");
    save_llm(&out, &llm, &json).unwrap();
    let loaded = anchorage_llm::load_llm::<Flex>(&out, DType::F32, &device).unwrap();
    assert_eq!(loaded.config, spec.config);
    let batch = lm_stream_batch::<Flex>(&tok, &spec, 1, LM_HELD_OUT, 0, &device).unwrap();
    let logits = |m: &anchorage_llm::Llm<Flex>| {
        let input = anchorage_llm::LlmInput::plain(m.embed(batch.ids.clone()));
        m.logits(m.forward_embeds(input, &mut anchorage_llm::NoHooks).unwrap().hidden)
    };
    assert!(max_diff(logits(&llm), logits(&loaded)) < 1e-5);
    let reread = TextTokenizer::from_file(&out.join(TOKENIZER)).unwrap();
    assert_eq!(reread.vocab_size(), spec.config.vocab_size);
    let names = anchorage_data::image::tensor_names(&out.join(WEIGHTS)).unwrap();
    assert!(
        names.contains(&"model.layers.0.self_attn.q_proj.weight".to_string())
            && names.contains(&"lm_head.weight".to_string())
    );
}

/// The LLM trains on its samples packed back to back; the loss and every weight's gradient equal
/// those of the same samples right-padded (the curriculum's mixed phase: drills, questions and
/// records of different lengths).
#[test]
fn packed_loss_and_gradients_equal_the_padded_ones() {
    use crate::llm::{lm_batch, lm_nll_sum, lm_sample, packed_batch, packed_nll_sum, Draw};
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let (tok, _) = small_tokenizer(dir.path());
    let mut spec = tiny_llm(tok.vocab_size(), 1);
    spec.config.num_attention_heads = 4;
    spec.config.num_key_value_heads = 2;
    spec.config.head_dim = 8;
    let draw = Draw::Mixed { share: 0.3, questions: 0.4, colour: 1.0 / 3.0 };
    let samples: Vec<_> = (0..7).map(|i| lm_sample(&tok, 3, 77, i, 320, draw, 0.5).unwrap()).collect();
    let lengths: Vec<usize> = samples.iter().map(|s| s.ids.len()).collect();
    assert!(lengths.iter().max() > lengths.iter().min(), "samples of different lengths: {lengths:?}");
    let llm = spec.config.init::<A>(&device);
    let packed = packed_nll_sum(&llm, &packed_batch::<A>(&samples, &device)).unwrap();
    let padded = lm_nll_sum(&llm, &lm_batch::<A>(&samples, tok.pad_id(), &device)).unwrap();
    let (a, b): (f32, f32) = (packed.clone().into_scalar(), padded.clone().into_scalar());
    assert!((a - b).abs() < 1e-4 * b.abs(), "packed {a}, padded {b}");
    let (ga, gb) = (packed.backward(), padded.backward());
    let weights = |g: &<A as burn::tensor::backend::AutodiffBackend>::Gradients| {
        let layer = &llm.model.layers[0];
        [
            layer.self_attn.q_proj.weight.grad(g).unwrap(),
            layer.self_attn.k_proj.weight.grad(g).unwrap(),
            layer.mlp.down_proj.weight.grad(g).unwrap(),
            llm.model.embed_tokens.weight.grad(g).unwrap(),
        ]
    };
    for (x, y) in weights(&ga).into_iter().zip(weights(&gb)) {
        let scale: f32 = y.clone().abs().max().into_scalar();
        let diff = max_diff(x, y);
        assert!(diff < 1e-4 * scale.max(1e-3), "gradient differs by {diff} (largest {scale})");
    }
}

#[test]
fn short_training_lowers_both_losses() {
    let device = Default::default();
    let (probe, log) = train_vision::<A>(&tiny_vision(60), 2, &device).unwrap();
    let (first, last) = log.first_last(5);
    assert!(last < first * 0.9, "vision loss {first} -> {last}");
    let batch = vision_batch::<Flex>(2, HELD_OUT_STREAM, 0, 64, 32, 8, &device);
    let acc = crate::vision::probe_accuracy(&probe, &batch).unwrap();
    assert!(acc.iter().all(|a| a.is_finite()));

    let dir = tempfile::tempdir().unwrap();
    let (tok, _) = small_tokenizer(dir.path());
    let (_, log) = train_llm::<A>(&tiny_llm(tok.vocab_size(), 30), &tok, 2, &device).unwrap();
    let (first, last) = log.first_last(5);
    assert!(last < first * 0.7, "LLM loss {first} -> {last}");
}

#[test]
fn ensure_towers_reuses_matching_folders_and_retrains_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let tokenizer = TokenizerOptions {
        scenes: 400,
        ..TokenizerOptions::default()
    };
    let specs = TowerSpecs {
        vision: tiny_vision(1),
        llm: tiny_llm(tokenizer.vocab_size, 1),
        tokenizer,
    };
    let first = ensure_towers_with::<A>(dir.path(), 3, &specs, &device).unwrap();
    assert!(first.trained_vision && first.trained_llm);
    let again = ensure_towers_with::<A>(dir.path(), 3, &specs, &device).unwrap();
    assert!(!again.trained_vision && !again.trained_llm);
    let other = ensure_towers_with::<A>(dir.path(), 4, &specs, &device).unwrap();
    assert!(other.trained_vision && other.trained_llm);
    load_clip_vision_with::<Flex>(&other.vision, &device, LoadOptions::default()).unwrap();
    anchorage_llm::load_llm::<Flex>(&other.llm, DType::F32, &device).unwrap();
}

#[test]
fn patch_labels_mark_the_patches_the_shape_covers() {
    use anchorage_data::synth::{Colour, Scene, Shape};
    // A 16x16 rectangle on patch boundaries (8 px patches of a 32 px image): patches (1,1), (1,2),
    // (2,1), (2,2) are covered, the others are background.
    let scene = Scene {
        shape: Shape::Rectangle,
        colour: Colour::Teal,
        cx: 16.0,
        cy: 16.0,
        half_w: 8.0,
        half_h: 8.0,
        angle: 0.0,
        fill: [0, 128, 128],
        background: [240, 240, 240],
        size: 32,
    };
    let covers = crate::vision::shape_covers(&scene, 4);
    let on: Vec<usize> = (0..16).filter(|&k| covers[k]).collect();
    assert_eq!(on, vec![5, 6, 9, 10]);
    // The batch's per-patch targets are 1 + the shape / colour index where covered, 0 elsewhere.
    let device = Default::default();
    let batch = vision_batch::<Flex>(3, HELD_OUT_STREAM, 0, 4, 32, 8, &device);
    let shapes = batch.patch_shape.into_data().convert::<i64>().to_vec::<i64>().unwrap();
    let colours = batch.patch_colour.into_data().convert::<i64>().to_vec::<i64>().unwrap();
    for (i, scene) in batch.scenes.iter().enumerate() {
        let covers = crate::vision::shape_covers(scene, 4);
        assert!(covers.iter().any(|&c| c), "every scene covers some patch");
        for k in 0..16 {
            let (s, c) = (shapes[i * 16 + k], colours[i * 16 + k]);
            if covers[k] {
                assert_eq!(
                    (s, c),
                    (1 + scene.shape.index() as i64, 1 + scene.colour.index() as i64)
                );
            } else {
                assert_eq!((s, c), (0, 0));
            }
        }
    }
}

#[test]
fn caption_questions_are_scored_per_category() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let (tok, _) = small_tokenizer(dir.path());
    // Eval-style questions rotate shape, colour, presence yes, presence no.
    let cats: Vec<&str> = (0..8)
        .map(|i| {
            crate::llm::question_sample(&tok, 0, 7, i, 160, 0.0)
                .unwrap()
                .0
                .category
                .name()
        })
        .collect();
    assert_eq!(cats, ["shape", "color", "presence", "presence"].repeat(2));
    let (q, sample) = crate::llm::question_sample(&tok, 0, 7, 2, 160, 0.0).unwrap();
    assert_eq!(q.answer, "yes");
    // Only the answer and the end of the turn are supervised.
    let supervised: Vec<u32> = sample
        .ids
        .iter()
        .zip(&sample.supervised)
        .filter(|(_, &s)| s)
        .map(|(&i, _)| i as u32)
        .collect();
    assert_eq!(*supervised.last().unwrap(), 2, "the answer ends with </s>");
    assert_eq!(tok.decode(&supervised, true).unwrap().trim(), "yes");
    let spec = tiny_llm(tok.vocab_size(), 1);
    let (llm, _) = train_llm::<A>(&spec, &tok, 1, &device).unwrap();
    let acc = crate::llm::answer_accuracy(&llm, &tok, 0, 16, spec.max_len, &device).unwrap();
    assert!(acc.iter().all(|a| (0.0..=1.0).contains(a)), "{acc:?}");
}

#[test]
fn batches_split_into_contiguous_slices_that_cover_them() {
    use crate::schedule::slices;
    assert_eq!(slices(32, 2), [0..16, 16..32]);
    assert_eq!(slices(5, 2), [0..3, 3..5]);
    assert_eq!(slices(7, 3), [0..3, 3..5, 5..7]);
    assert_eq!(slices(1, 2), [0..1], "never an empty slice");
    // The slices of a step are the samples of the unsliced batch, in order.
    let whole = vision_batch::<Flex>(4, HELD_OUT_STREAM, 3, 6, 32, 8, &Default::default());
    let parts: Vec<_> = slices(6, 2)
        .into_iter()
        .map(|r| crate::vision::vision_samples::<Flex>(4, HELD_OUT_STREAM, 3 * 6 + r.start as u64, r.len(), 32, 8, &Default::default()))
        .collect();
    let joined: Vec<_> = parts.iter().flat_map(|p| p.scenes.clone()).collect();
    assert_eq!(joined, whole.scenes);
}

#[test]
fn balanced_slices_even_out_the_costs_and_cover_the_batch() {
    use crate::schedule::balanced_slices;
    assert_eq!(balanced_slices(&[1; 8], 4), [0..2, 2..4, 4..6, 6..8], "equal costs: equal counts");
    assert_eq!(balanced_slices(&[10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2), [0..1, 1..11]);
    assert_eq!(balanced_slices(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10], 2), [0..10, 10..11]);
    assert_eq!(balanced_slices(&[5, 1, 1, 1, 5], 2), [0..2, 2..5]);
    assert_eq!(balanced_slices(&[100, 0, 0], 3), [0..1, 1..2, 2..3], "never an empty slice");
    assert_eq!(balanced_slices(&[3, 4], 4), [0..1, 1..2], "no more slices than items");
    assert_eq!(balanced_slices(&[], 2), [0..0]);
    // Random costs: contiguous, covering, and no slice further from the even share than its
    // largest item.
    let mut rng = anchorage_data::SplitMix64::for_epoch(1, 2, 3);
    for _ in 0..200 {
        let costs: Vec<usize> = (0..1 + rng.below(40) as usize).map(|_| 1 + rng.below(300) as usize).collect();
        let n = 1 + rng.below(6) as usize;
        let parts = balanced_slices(&costs, n);
        assert_eq!(parts.len(), n.min(costs.len()));
        assert_eq!(parts[0].start, 0);
        assert_eq!(parts.last().unwrap().end, costs.len());
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start) && parts.iter().all(|p| !p.is_empty()));
        let share = costs.iter().sum::<usize>() as f64 / parts.len() as f64;
        let largest = *costs.iter().max().unwrap() as f64;
        for p in &parts {
            let cost = costs[p.clone()].iter().sum::<usize>() as f64;
            assert!((cost - share).abs() <= 2.0 * largest, "{costs:?} into {n}: {parts:?}");
        }
    }
}

#[test]
fn presence_samples_name_what_they_are_asked_to_and_are_answered_by_the_world_oracle() {
    use anchorage_data::synth::{answer_for, Colour, PresenceNames, Scene};
    use anchorage_data::SplitMix64;
    let dir = tempfile::tempdir().unwrap();
    let (tok, _) = small_tokenizer(dir.path());
    for (names, colour, shape) in [(PresenceNames::Colour, true, false), (PresenceNames::Shape, false, true), (PresenceNames::Both, true, true)] {
        for i in 0..40u64 {
            let (q, sample) = crate::llm::presence_sample(&tok, 3, 7, i, names, 256, 0.5).unwrap();
            let scene = Scene::sample(&mut SplitMix64::for_epoch(3, 7, i), 64);
            assert_eq!(answer_for(&scene, &q.text).as_deref(), Some(q.answer.as_str()), "{}", q.text);
            assert_eq!(q.answer == "yes", i % 2 == 0, "even questions are answered yes: {}", q.text);
            let text = q.text.to_lowercase();
            let names_colour = Colour::ALL.iter().any(|c| text.contains(c.name()));
            let names_shape = ["circle", "rectangle", "triangle"].iter().any(|s| text.contains(s));
            assert_eq!((names_colour, names_shape), (colour, shape), "{names:?}: {}", q.text);
            let supervised: Vec<u32> =
                sample.ids.iter().zip(&sample.supervised).filter(|(_, &s)| s).map(|(&t, _)| t as u32).collect();
            assert_eq!(tok.decode(&supervised, true).unwrap().trim(), q.answer);
        }
    }
}

#[test]
fn presence_drills_follow_the_curriculum_and_are_answered_by_the_world_oracle() {
    use anchorage_data::synth::{answer_for, Scene, SHORT_ANSWER_SUFFIX};
    use anchorage_data::SplitMix64;
    let dir = tempfile::tempdir().unwrap();
    let (tok, _) = small_tokenizer(dir.path());
    let mut spec = LlmSpec::with_presence_curriculum(tok.vocab_size());
    assert_eq!(LlmSpec::for_vocab(8).draw_at(0), Draw::Corpus, "the default trains on the corpus alone");
    spec.train.steps = 10;
    spec.train.batch = 4;
    spec.curriculum.corpus_first = 0.1;
    spec.curriculum.colour_drills = 0.5;
    let (plain, negated, corpus) = (Draw::Drill { negation: false, colour: 0.5 }, Draw::Drill { negation: true, colour: 0.5 }, Draw::Corpus);
    let draws: Vec<Draw> = (0..10).map(|s| spec.draw_at(s)).collect();
    assert_eq!(draws[0], corpus);
    assert_eq!(draws[1..3], [plain; 2]);
    assert_eq!(draws[3..7], [negated; 4]);
    // Then each sample of the last phase draws: about a quarter drills.
    spec.curriculum.drill_share = 0.25;
    assert_eq!(draws[7..], [Draw::Mixed { share: 0.3, questions: 0.4, colour: 0.5 }; 3]);
    assert_eq!(spec.draw_at(9), Draw::Mixed { share: 0.25, questions: 0.4, colour: 0.5 });
    let drills = (0..400u64)
        .filter(|&i| {
            let s = crate::llm::lm_sample(&tok, 5, 9, i, 160, Draw::Mixed { share: 0.25, questions: 0.0, colour: 0.5 }, 0.0).unwrap();
            s.ids.len() < 60 && s.supervised.iter().filter(|&&x| x).count() == 2
        })
        .count();
    assert!((60..140).contains(&drills), "about a quarter of the mixed samples are drills: {drills}/400");
    // With a question share, those samples are the evaluation-style questions of the same index.
    for i in 0..8u64 {
        let s = crate::llm::lm_sample(&tok, 5, 9, i, 160, Draw::Mixed { share: 0.0, questions: 1.0, colour: 0.5 }, 0.0).unwrap();
        assert_eq!(s, crate::llm::question_sample(&tok, 5, 9, i, 160, 0.0).unwrap().1);
    }

    let (mut negations, mut yes, mut suffixes) = (0, 0, 0);
    for i in 0..300u64 {
        let negation = i % 2 == 1;
        let sample = crate::llm::lm_sample(&tok, 5, 9, i, 160, Draw::Drill { negation, colour: 0.5 }, 0.0).unwrap();
        // The sample's scene is the first draw of the same generator.
        let scene = Scene::sample(&mut SplitMix64::for_epoch(5, 9, i), 64);
        let text = tok.decode(&sample.ids.iter().map(|&t| t as u32).collect::<Vec<_>>(), false).unwrap();
        // The tokenizer lower-cases, so the decoded drill is lower case.
        let (prefix, rest) = text.split_once(" assistant:").unwrap();
        let prefix = prefix.trim_start_matches("<s>").trim();
        let prefix = prefix.strip_suffix(&format!("\n{}", SHORT_ANSWER_SUFFIX.to_lowercase())).unwrap_or(prefix);
        let (head, question) = prefix.split_once(". ").unwrap();
        // One of the world's captions of the scene.
        assert!(head.starts_with("a ") && head.contains(&format!("{} {}", scene.colour.name(), scene.shape.name())), "{text}");
        suffixes += usize::from(text.contains(&SHORT_ANSWER_SUFFIX.to_lowercase()));
        let supervised: Vec<u32> =
            sample.ids.iter().zip(&sample.supervised).filter(|(_, &s)| s).map(|(&t, _)| t as u32).collect();
        let answer = tok.decode(&supervised, true).unwrap();
        assert_eq!(rest.trim(), format!("{}</s>", answer.trim()));
        assert_eq!(answer_for(&scene, question).as_deref(), Some(answer.trim()), "{text}");
        let q = question.to_lowercase();
        let is_negated = q.contains(" not ") || q.contains(" no ");
        assert!(negation || !is_negated, "no negation before the negation phase: {text}");
        negations += usize::from(is_negated);
        yes += usize::from(answer.trim() == "yes");
    }
    assert!((30..70).contains(&negations), "a third of the negation drills are negated: {negations}/150");
    assert!((120..180).contains(&yes), "yes and no equally likely: {yes}/300");
    assert!((120..180).contains(&suffixes), "the short-answer suffix half the time: {suffixes}/300");
}

#[test]
fn settings_override_the_specs_and_bad_ones_are_errors_naming_the_key() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let llm = LlmSpec::with_settings(512, &s(&["curriculum=presence", "steps=1200", "drill_share=0.25"])).unwrap();
    let want = LlmSpec::with_presence_curriculum(512);
    assert_eq!(llm.train.steps, 1200);
    assert_eq!(llm.train.lr, want.train.lr);
    assert_eq!((llm.curriculum.matching, llm.curriculum.drill_share), (0.2, 0.25));
    // The curriculum is the default; `curriculum=none` sets the corpus-only base wherever it
    // stands, and the other keys override it.
    assert_eq!(LlmSpec::with_settings(512, &[]).unwrap(), want);
    let none = LlmSpec::with_settings(512, &s(&["steps=120", "curriculum=none"])).unwrap();
    assert_eq!((none.train.steps, none.train.batch, none.curriculum.clone()), (120, 12, Curriculum::corpus_only()));
    let vision = VisionSpec::with_settings(&s(&["layers=2", "lr=1e-3"])).unwrap();
    assert_eq!((vision.config.num_hidden_layers, vision.train.lr), (2, 1e-3));
    // Heads split the width; each is a key/value head.
    let heads = LlmSpec::with_settings(512, &s(&["heads=16", "width=256"])).unwrap().config;
    assert_eq!((heads.num_attention_heads, heads.num_key_value_heads, heads.head_dim, heads.hidden_size), (16, 16, 16, 256));

    for (bad, names) in [
        (s(&["stepz=3"]), "stepz"),
        (s(&["steps=many"]), "steps=many"),
        (s(&["steps=0"]), "steps=0"),
        (s(&["lr"]), "key=value"),
        (s(&["curriculum=speed"]), "curriculum=speed"),
        (s(&["matching=0.7", "negation=0.5"]), "may exceed 1"),
        (s(&["drill_share=0.7", "question_share=0.5"]), "may exceed 1"),
        (s(&["heads=3"]), "3 heads do not split a width of 128"),
    ] {
        let err = LlmSpec::with_settings(512, &bad).unwrap_err().to_string();
        assert!(err.contains(names), "{bad:?}: {err}");
    }
    let err = VisionSpec::with_settings(&s(&["drill_share=0.5"])).unwrap_err().to_string();
    assert!(err.contains("drill_share"), "{err}");
}

#[test]
fn word_grids_name_the_covered_cells_and_captions_fill_the_rest() {
    use anchorage_data::synth::{Colour, Scene, Shape};
    use anchorage_data::SplitMix64;
    let (mut grids, mut captions) = (0, 0);
    for i in 0..200u64 {
        let mut rng = SplitMix64::new(i);
        let scene = Scene::sample_with(&mut rng, Shape::ALL[i as usize % 3], Colour::ALL[i as usize % 8], 64);
        let text = crate::llm::describe(&mut rng, &scene, 0.5);
        let words: Vec<&str> = text.split(' ').collect();
        if words.len() == 16 || words.len() == 64 {
            grids += 1;
            let side = if words.len() == 16 { 4 } else { 8 };
            let covered = crate::vision::shape_covers(&scene, side);
            let mut k = 0;
            for (w, on) in words.iter().zip(covered) {
                if on {
                    k += 1;
                    let want = if k % 2 == 1 { scene.colour.name() } else { scene.shape.name() };
                    assert_eq!(*w, want, "{text}");
                } else {
                    assert_eq!(*w, "background", "{text}");
                }
            }
            assert!(k >= 2, "{text}");
        } else {
            captions += 1;
            assert!(text.starts_with("a ") && text.contains(scene.colour.name()) && text.contains(scene.shape.name()), "{text}");
        }
        // Without grids, the caption the generator would have drawn anyway.
        let mut a = SplitMix64::new(i + 1000);
        let mut b = a.clone();
        assert_eq!(crate::llm::describe(&mut a, &scene, 0.0), anchorage_data::synth::caption(&mut b, &scene));
    }
    assert!((60..140).contains(&grids) && grids + captions == 200, "{grids} grids, {captions} captions");
}
