"""A bundle as a static web page that scores images in the browser (``ufd-bundle web``)."""
