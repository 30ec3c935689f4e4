"""The page ser-live --serve shows at / (package data: plain HTML/JS/CSS, no build step)."""
