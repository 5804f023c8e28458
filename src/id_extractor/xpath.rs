//! XPath over an XML text (sxd-document + sxd-xpath), for the `xpath` extractor. Like Tyk's
//! `xmlpath`-based extractor, the result is the string value of the first node found.

use super::limits::ExtractLimits;
use super::xml_scan;

/// Why no value came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The document is over a limit: it was never parsed.
    OverLimit(String),
    /// Not XML, or the expression selects nothing.
    NotFound(String),
}

/// A validated XPath expression. sxd-xpath's compiled form is neither `Send` nor `Sync`, so the text
/// is kept and compiled per use (extraction runs once per request and only on a cache miss path).
#[derive(Debug, Clone)]
pub struct Compiled {
    expression: String,
}

impl Compiled {
    /// Checks that `expression` compiles.
    pub fn new(expression: &str) -> Result<Compiled, String> {
        compile(expression)?;
        Ok(Compiled {
            expression: expression.to_owned(),
        })
    }

    /// The string value of the first node (in document order) the expression selects in `xml`; for an
    /// expression that yields a string, number or boolean, that value as text. `xml` is pre-scanned
    /// against the limits before it is parsed.
    pub fn first_string(&self, xml: &str, limits: &ExtractLimits) -> Result<String, Failure> {
        xml_scan::check(xml, limits.max_xml_depth, limits.max_xml_elements)
            .map_err(|r| Failure::OverLimit(r.to_string()))?;
        self.evaluate(xml).map_err(Failure::NotFound)
    }

    fn evaluate(&self, xml: &str) -> Result<String, String> {
        let package =
            sxd_document::parser::parse(xml).map_err(|e| format!("the input is not XML: {e}"))?;
        let document = package.as_document();
        let xpath = compile(&self.expression)?;
        let context = sxd_xpath::Context::new();
        let value = xpath
            .evaluate(&context, document.root())
            .map_err(|e| format!("evaluating '{}': {e}", self.expression))?;
        let text = match value {
            sxd_xpath::Value::Nodeset(nodes) => nodes
                .document_order_first()
                .map(|n| n.string_value())
                .ok_or_else(|| format!("'{}' selects no node", self.expression))?,
            other => other.string(),
        };
        Ok(text)
    }
}

fn compile(expression: &str) -> Result<sxd_xpath::XPath, String> {
    sxd_xpath::Factory::new()
        .build(expression)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the expression is empty".to_owned())
}
