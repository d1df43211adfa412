//! Plots, Markdown and HTML reports from a results file.
