//! Pure renderers: the report's model in, text out (index.html and its SVG charts with maud,
//! gate.xml with quick-junit, the terminal tables). Nothing here touches a file.

pub mod history;
pub mod html;
pub mod junit;
pub mod svg;
pub mod terminal;
