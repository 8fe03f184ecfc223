"""The default theme. This folder is its source of truth; the wheel ships it as the package
`newsletter.theme`, which the code reads through importlib.resources (render.theme_folder),
so an installed tool finds it wherever it lives."""
