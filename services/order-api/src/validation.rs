//! Turns validator's nested errors into one 422 with a list of field problems.

use serde_json::{json, Value};
use validator::{ValidationErrors, ValidationErrorsKind};

use crate::error::ApiError;

pub fn validate(value: &impl validator::Validate) -> Result<(), ApiError> {
    value.validate().map_err(|errors| {
        let mut problems = Vec::new();
        flatten("", &errors, &mut problems);
        let summary = problems
            .iter()
            .filter_map(|p| {
                Some(format!(
                    "{}: {}",
                    p["field"].as_str()?,
                    p["message"].as_str()?
                ))
            })
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::validation(format!("invalid request: {summary}"))
            .with_details(json!({ "fields": problems }))
    })
}

fn flatten(prefix: &str, errors: &ValidationErrors, out: &mut Vec<Value>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(field_errors) => {
                for error in field_errors {
                    let message = error
                        .message
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| default_message(&error.code, &error.params));
                    out.push(json!({ "field": path, "code": error.code, "message": message }));
                }
            }
            ValidationErrorsKind::Struct(inner) => flatten(&path, inner, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    flatten(&format!("{path}[{index}]"), inner, out);
                }
            }
        }
    }
}

fn default_message(
    code: &str,
    params: &std::collections::HashMap<std::borrow::Cow<'static, str>, Value>,
) -> String {
    let param = |name: &str| params.get(name).map(ToString::to_string);
    match code {
        "email" => "must be a valid e-mail address".into(),
        "length" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("length must be between {min} and {max}"),
            (Some(min), None) => format!("length must be at least {min}"),
            (None, Some(max)) => format!("length must be at most {max}"),
            _ => "invalid length".into(),
        },
        "range" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "out of range".into(),
        },
        other => format!("invalid ({other})"),
    }
}

/// Rejects strings that are empty once trimmed, or that PostgreSQL cannot store
/// ([`storable`]).
pub fn not_blank(value: &str) -> Result<(), validator::ValidationError> {
    storable(value)?;
    if value.chars().any(char::is_control) {
        return Err(validator::ValidationError::new("control_character")
            .with_message("must not contain control characters (line breaks, tabs)".into()));
    }
    if value.trim().is_empty() {
        Err(validator::ValidationError::new("blank").with_message("must not be blank".into()))
    } else {
        Ok(())
    }
}

/// Rejects strings with a NUL character: valid JSON (`\u0000`), but PostgreSQL's text and
/// jsonb cannot hold it, so it must be refused here rather than fail the insert (a 500).
pub fn storable(value: &str) -> Result<(), validator::ValidationError> {
    if value.contains('\0') {
        Err(validator::ValidationError::new("nul_character")
            .with_message("must not contain NUL characters".into()))
    } else {
        Ok(())
    }
}

/// An e-mail address the mailer can send to: the domain's one parser
/// (`orderflow::email::CustomerEmail`), so the API accepts exactly what can be mailed.
pub fn deliverable_email(value: &str) -> Result<(), validator::ValidationError> {
    storable(value)?;
    orderflow::email::CustomerEmail::parse(value)
        .map(drop)
        .map_err(|error| {
            validator::ValidationError::new("email")
                .with_message(format!("must be an e-mail address: {error}").into())
        })
}
