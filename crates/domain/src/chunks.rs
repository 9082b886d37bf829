//! Splitting a knowledge-base document into chunks the voice agent can quote: paragraphs are
//! packed together up to a size; a paragraph longer than that is cut at sentence ends, and a
//! sentence longer than that at the size itself (on a character boundary).

/// Chunks of at most `max` characters (`max` ≥ 1), in order, none empty.
pub fn chunks(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut current = String::new();
    let push = |piece: &str, current: &mut String, out: &mut Vec<String>| {
        let needed = if current.is_empty() { 0 } else { 2 } + piece.chars().count();
        if current.chars().count() + needed > max && !current.is_empty() {
            out.push(std::mem::take(current));
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(piece);
    };
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        for piece in pieces(paragraph, max) {
            push(&piece, &mut current, &mut out);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A paragraph as pieces of at most `max` characters: whole, or cut at sentence ends, or hard.
fn pieces(paragraph: &str, max: usize) -> Vec<String> {
    if paragraph.chars().count() <= max {
        return vec![paragraph.to_owned()];
    }
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for sentence in paragraph
        .split_inclusive(['.', '!', '?'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let length = sentence.chars().count();
        if length > max {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            let chars: Vec<char> = sentence.chars().collect();
            out.extend(chars.chunks(max).map(|c| c.iter().collect::<String>()));
            continue;
        }
        let needed = if current.is_empty() {
            length
        } else {
            length + 1
        };
        if current.chars().count() + needed > max {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(sentence);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paragraphs_are_packed_and_nothing_is_lost() {
        let text = "Parking is free.\n\nWe open at nine.\n\n\n\nBring your card.";
        assert_eq!(
            chunks(text, 1000),
            vec!["Parking is free.\n\nWe open at nine.\n\nBring your card."]
        );
        let small = chunks(text, 20);
        assert_eq!(
            small,
            vec!["Parking is free.", "We open at nine.", "Bring your card."]
        );
    }

    #[test]
    fn long_paragraphs_are_cut_at_sentences_then_hard_and_respect_the_limit() {
        let text = format!("One. Two two. {}. Three?", "x".repeat(25));
        let out = chunks(&text, 10);
        assert!(
            out.iter().all(|c| c.chars().count() <= 10 && !c.is_empty()),
            "{out:?}"
        );
        let rejoined: String = out
            .concat()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let original: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(rejoined, original);
        assert_eq!(
            chunks("ééééé", 2),
            vec!["éé", "éé", "é"],
            "cuts on character boundaries"
        );
        assert!(chunks("  \n\n ", 10).is_empty());
    }
}
