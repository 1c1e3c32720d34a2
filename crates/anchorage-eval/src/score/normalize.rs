//! The answer normaliser of TextVQA and VQAv2 scoring: `EvalAIAnswerProcessor` of
//! haotian-liu/LLaVA `llava/eval/m4c_evaluator.py` (itself from facebookresearch/mmf), step for step:
//! lowercase and drop `,` `?`, split `'s`; strip; punctuation; periods; number words; articles;
//! contractions.
//!
//! Quirks kept: the period rule removes at most 32 periods (`PERIOD_STRIP.sub("", text, re.UNICODE)`
//! passes `re.UNICODE` = 32 as `count`); its look-behind is written `(?!<=\d)` and so tests nothing,
//! leaving "a `.` not followed by a digit"; the table maps `somebody'd` to `somebodyd` and holds
//! capitalised keys (`Im`, `Ive`, `Id've`) that lowercased text never meets.

use super::pytext::{py_decimal, py_lower, py_split_ws, py_strip};

const PUNCTUATIONS: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!',
];
const ARTICLES: [&str; 3] = ["a", "an", "the"];
const MAX_PERIODS: usize = 32;

/// `EvalAIAnswerProcessor()(answer)`.
pub fn normalize_answer(answer: &str) -> String {
    let item = word_tokenize(answer);
    let item = item.replace('\n', " ").replace('\t', " ");
    let item = process_punctuation(py_strip(&item));
    process_digit_article(&item)
}

fn word_tokenize(word: &str) -> String {
    let word = py_lower(word).replace(',', "").replace('?', "").replace("'s", " 's");
    py_strip(&word).to_string()
}

/// Each punctuation mark is deleted where it touches a space in the input (or the input has a
/// digit-comma-digit run), else replaced by a space; then the periods go.
fn process_punctuation(in_text: &str) -> String {
    let comma_between_digits = has_comma_between_digits(in_text);
    let mut out = in_text.to_string();
    for p in PUNCTUATIONS {
        let touches_space = in_text.contains(&format!("{p} ")) || in_text.contains(&format!(" {p}"));
        out = if touches_space || comma_between_digits { out.replace(p, "") } else { out.replace(p, " ") };
    }
    strip_periods(&out)
}

/// `COMMA_STRIP = (?<=\d)(\,)+(?=\d)` found anywhere (never, after `word_tokenize` dropped commas).
fn has_comma_between_digits(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        if c != ',' || i == 0 || py_decimal(chars[i - 1]).is_none() {
            return false;
        }
        let end = chars[i..].iter().position(|&c| c != ',').map(|n| i + n);
        end.is_some_and(|e| py_decimal(chars[e]).is_some())
    })
}

/// Removes the first 32 periods that a decimal digit does not follow (look-ahead on the input).
fn strip_periods(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next_is_digit = chars.peek().is_some_and(|&n| py_decimal(n).is_some());
        if c == '.' && !next_is_digit && removed < MAX_PERIODS {
            removed += 1;
        } else {
            out.push(c);
        }
    }
    out
}

fn process_digit_article(in_text: &str) -> String {
    let lowered = py_lower(in_text);
    let words: Vec<&str> = py_split_ws(&lowered)
        .into_iter()
        .map(number_word)
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| contraction(w).unwrap_or(w))
        .collect();
    words.join(" ")
}

fn number_word(word: &str) -> &str {
    match word {
        "none" | "zero" => "0",
        "one" => "1",
        "two" => "2",
        "three" => "3",
        "four" => "4",
        "five" => "5",
        "six" => "6",
        "seven" => "7",
        "eight" => "8",
        "nine" => "9",
        "ten" => "10",
        _ => word,
    }
}

fn contraction(word: &str) -> Option<&'static str> {
    CONTRACTIONS.iter().find(|(from, _)| *from == word).map(|(_, to)| *to)
}

/// `EvalAIAnswerProcessor.CONTRACTIONS`, in its order.
#[rustfmt::skip]
pub const CONTRACTIONS: [(&str, &str); 120] = [
    ("aint", "ain't"), ("arent", "aren't"), ("cant", "can't"), ("couldve", "could've"),
    ("couldnt", "couldn't"), ("couldn'tve", "couldn't've"), ("couldnt've", "couldn't've"),
    ("didnt", "didn't"), ("doesnt", "doesn't"), ("dont", "don't"), ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"), ("hadn'tve", "hadn't've"), ("hasnt", "hasn't"),
    ("havent", "haven't"), ("hed", "he'd"), ("hed've", "he'd've"), ("he'dve", "he'd've"),
    ("hes", "he's"), ("howd", "how'd"), ("howll", "how'll"), ("hows", "how's"), ("Id've", "I'd've"),
    ("I'dve", "I'd've"), ("Im", "I'm"), ("Ive", "I've"), ("isnt", "isn't"), ("itd", "it'd"),
    ("itd've", "it'd've"), ("it'dve", "it'd've"), ("itll", "it'll"), ("let's", "let's"),
    ("maam", "ma'am"), ("mightnt", "mightn't"), ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"), ("mightve", "might've"), ("mustnt", "mustn't"),
    ("mustve", "must've"), ("neednt", "needn't"), ("notve", "not've"), ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"), ("ow's'at", "'ow's'at"), ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"), ("shant", "shan't"), ("shed've", "she'd've"), ("she'dve", "she'd've"),
    ("she's", "she's"), ("shouldve", "should've"), ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"), ("shouldn'tve", "shouldn't've"), ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"), ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"), ("somebodys", "somebody's"), ("someoned", "someone'd"),
    ("someoned've", "someone'd've"), ("someone'dve", "someone'd've"), ("someonell", "someone'll"),
    ("someones", "someone's"), ("somethingd", "something'd"), ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"), ("somethingll", "something'll"), ("thats", "that's"),
    ("thered", "there'd"), ("thered've", "there'd've"), ("there'dve", "there'd've"),
    ("therere", "there're"), ("theres", "there's"), ("theyd", "they'd"), ("theyd've", "they'd've"),
    ("they'dve", "they'd've"), ("theyll", "they'll"), ("theyre", "they're"), ("theyve", "they've"),
    ("twas", "'twas"), ("wasnt", "wasn't"), ("wed've", "we'd've"), ("we'dve", "we'd've"),
    ("weve", "we've"), ("werent", "weren't"), ("whatll", "what'll"), ("whatre", "what're"),
    ("whats", "what's"), ("whatve", "what've"), ("whens", "when's"), ("whered", "where'd"),
    ("wheres", "where's"), ("whereve", "where've"), ("whod", "who'd"), ("whod've", "who'd've"),
    ("who'dve", "who'd've"), ("wholl", "who'll"), ("whos", "who's"), ("whove", "who've"),
    ("whyll", "why'll"), ("whyre", "why're"), ("whys", "why's"), ("wont", "won't"),
    ("wouldve", "would've"), ("wouldnt", "wouldn't"), ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"), ("yall", "y'all"), ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"), ("yall'd've", "y'all'd've"), ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"), ("youd", "you'd"), ("youd've", "you'd've"),
    ("you'dve", "you'd've"), ("youll", "you'll"), ("youre", "you're"), ("youve", "you've"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize_answer(s)
    }

    #[test]
    fn lowercases_strips_and_drops_commas_and_question_marks() {
        assert_eq!(n("  Hello, World?\n"), "hello world");
        assert_eq!(n("1,000"), "1000");
    }

    #[test]
    fn punctuation_touching_a_space_is_deleted_else_spaced() {
        assert_eq!(n("t-shirt"), "t shirt");
        assert_eq!(n("t- shirt"), "t shirt"); // "- " present: every hyphen is deleted, not spaced
        assert_eq!(n("(left)"), "left");
        assert_eq!(n("a/b"), "b"); // "a b": the article goes
    }

    #[test]
    fn periods_go_unless_a_digit_follows() {
        assert_eq!(n("3.5"), "3.5");
        assert_eq!(n("Yes."), "yes");
        assert_eq!(n("u.s.a."), "usa");
        assert_eq!(n("..5"), ".5");
    }

    #[test]
    fn only_the_first_32_periods_go() {
        let many = ".".repeat(40);
        assert_eq!(n(&format!("x{many}")), format!("x{}", ".".repeat(8)));
    }

    #[test]
    fn numbers_articles_and_contractions() {
        assert_eq!(n("Two dogs"), "2 dogs");
        assert_eq!(n("None"), "0");
        assert_eq!(n("The Cat"), "cat");
        assert_eq!(n("an apple a day"), "apple day");
        assert_eq!(n("dont"), "don't");
        assert_eq!(n("Im"), "im"); // the capitalised key never matches
        assert_eq!(n("somebody'd"), "somebodyd");
    }

    #[test]
    fn possessive_s_splits_off() {
        assert_eq!(n("John's"), "john 's");
        assert_eq!(n("it's"), "it 's");
    }

    /// `tests/fixtures/eval/normalize.json`: the reference processor's output on tricky strings and
    /// its tables, written by `tests/fixtures/eval/generate.py`.
    fn reference_table() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/eval/normalize.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn equals_the_reference_processor_on_every_fixture_string() {
        let table = reference_table();
        for case in table["cases"].as_array().unwrap() {
            let (input, expected) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
            assert_eq!(n(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn tables_equal_the_reference() {
        let table = reference_table();
        let contractions: Vec<(String, String)> =
            serde_json::from_value(table["contractions"].clone()).unwrap();
        let ours: Vec<(String, String)> =
            CONTRACTIONS.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(ours, contractions);
        for (word, digit) in table["number_map"].as_object().unwrap() {
            assert_eq!(number_word(word), digit.as_str().unwrap());
        }
        let punctuations: Vec<String> = serde_json::from_value(table["punctuations"].clone()).unwrap();
        assert_eq!(PUNCTUATIONS.iter().map(|c| c.to_string()).collect::<Vec<_>>(), punctuations);
        assert_eq!(table["articles"], serde_json::json!(ARTICLES));
    }

    #[test]
    fn comma_between_digits_rule_never_fires_after_tokenizing() {
        assert!(has_comma_between_digits("1,,2"));
        assert!(!has_comma_between_digits("a,2"));
        assert!(!has_comma_between_digits("1,"));
    }
}
