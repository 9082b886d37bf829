//! The voices an assistant may speak with, as Vapi's catalogue names them. A clinic stores
//! its choice as `provider:voiceId`; what Vapi would refuse is refused when it is saved, so a
//! call never fails at `assistant-request` over a voice (Vapi ends such a call with
//! `assistant-request-returned-invalid-assistant`).
//!
//! Sources: the `voice` union of `CreateAssistantDTO` in Vapi's OpenAPI document (one schema
//! per provider, each with its `provider` value and a required `voiceId`), Vapi's own voices
//! at docs.vapi.ai/providers/voice/vapi-voices, and the voices it retired on 2026-03-01
//! (docs.vapi.ai/providers/voice/vapi-voices/legacy-migration), which new assistants cannot
//! use.

use serde_json::{json, Value};

/// Vapi's own voices, as of its 2026 catalogue.
const VAPI_VOICES: &[&str] = &[
    "Elliot", "Savannah", "Rohan", "Emma", "Clara", "Nico", "Kai", "Sagar", "Godfrey", "Neil",
    "Layla", "Sid", "Naina", "Leo", "Zoe", "Mia", "Jess", "Zac", "Dan", "Leah", "Tara",
];

/// Vapi's voices retired on 2026-03-01.
const RETIRED_VAPI_VOICES: &[&str] = &[
    "Kylie", "Lily", "Hana", "Neha", "Cole", "Harry", "Paige", "Spencer",
];

/// OpenAI's voices, as Vapi's `OpenAIVoice.voiceId` lists them.
const OPENAI_VOICES: &[&str] = &[
    "alloy", "echo", "fable", "onyx", "nova", "shimmer", "marin", "cedar",
];

/// The providers whose voice is a `voiceId` and nothing else. (`custom-voice` needs a server,
/// `neuphonic` a language and `sesame` a model: not offered.)
const PROVIDERS: &[&str] = &[
    "vapi",
    "11labs",
    "azure",
    "cartesia",
    "deepgram",
    "openai",
    "playht",
    "rime-ai",
    "lmnt",
    "hume",
    "wellsaid",
    "smallest-ai",
    "tavus",
    "inworld",
    "minimax",
    "xai",
    "microsoft",
];

/// The voice of a clinic that has not chosen one.
pub const DEFAULT: &str = "vapi:Elliot";

/// A voice Vapi accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voice {
    provider: &'static str,
    voice_id: String,
}

fn exact<'a>(list: &[&'a str], name: &str) -> Option<&'a str> {
    list.iter().find(|v| v.eq_ignore_ascii_case(name)).copied()
}

impl Voice {
    /// `provider:voiceId`, or the name of one of Vapi's own voices; names are matched without
    /// regard to case and stored as Vapi spells them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (provider, id) = text.split_once(':').unwrap_or(("vapi", text));
        let provider = exact(PROVIDERS, provider.trim()).ok_or_else(|| {
            format!(
                "`{provider}` is not a voice provider Vapi offers here; one of {}",
                PROVIDERS.join(", ")
            )
        })?;
        let id = id.trim();
        let voice_id = match provider {
            "vapi" => match exact(VAPI_VOICES, id) {
                Some(v) => v.to_owned(),
                None if exact(RETIRED_VAPI_VOICES, id).is_some() => {
                    return Err(format!(
                        "Vapi retired the voice `{id}` on 2026-03-01; choose one of {}",
                        VAPI_VOICES.join(", ")
                    ))
                }
                None => {
                    return Err(format!(
                        "`{id}` is not one of Vapi's voices ({}); another provider's voice is \
                         `provider:voiceId`, e.g. `openai:alloy` or `11labs:<voice id>`",
                        VAPI_VOICES.join(", ")
                    ))
                }
            },
            "openai" => exact(OPENAI_VOICES, id)
                .ok_or_else(|| {
                    format!(
                        "`{id}` is not an OpenAI voice: {}",
                        OPENAI_VOICES.join(", ")
                    )
                })?
                .to_owned(),
            _ => {
                let fits = (1..=100).contains(&id.len())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !fits {
                    return Err(format!(
                        "a {provider} voice id is 1 to 100 letters, digits, `-`, `_` or `.`"
                    ));
                }
                id.to_owned()
            }
        };
        Ok(Self { provider, voice_id })
    }

    /// A stored choice; one that no longer parses (a voice retired since it was saved, or the
    /// old `default`) speaks with the default voice.
    pub fn from_stored(text: &str) -> Self {
        Self::parse(text).unwrap_or_else(|_| Self::parse(DEFAULT).expect("the default voice"))
    }

    /// `provider:voiceId`, as stored.
    pub fn as_stored(&self) -> String {
        format!("{}:{}", self.provider, self.voice_id)
    }

    /// The assistant's `voice` block.
    pub fn to_vapi(&self) -> Value {
        json!({"provider": self.provider, "voiceId": self.voice_id})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_are_read_as_vapi_names_them() {
        let v = |t: &str| Voice::parse(t).map(|v| v.as_stored());
        assert_eq!(v("Elliot"), Ok("vapi:Elliot".into()));
        assert_eq!(v("vapi:savannah"), Ok("vapi:Savannah".into()));
        assert_eq!(v("openai:Alloy"), Ok("openai:alloy".into()));
        assert_eq!(
            v("11labs:21m00Tcm4TlvDq8ikWAM"),
            Ok("11labs:21m00Tcm4TlvDq8ikWAM".into())
        );
        assert_eq!(
            v("azure:en-US-AriaNeural"),
            Ok("azure:en-US-AriaNeural".into())
        );
        assert!(v("Kylie").expect_err("retired").contains("retired"));
        assert!(v("alloy").is_err(), "not a Vapi voice without its provider");
        assert!(v("openai:rachel").is_err());
        assert!(v("acme:x").is_err());
        assert!(v("custom-voice:x").is_err());
        assert!(v("11labs:").is_err());
        assert!(v("11labs:a b").is_err());
        assert_eq!(Voice::from_stored("default").as_stored(), DEFAULT);
        assert_eq!(
            Voice::parse("vapi:Rohan").expect("voice").to_vapi(),
            json!({"provider": "vapi", "voiceId": "Rohan"})
        );
    }
}
