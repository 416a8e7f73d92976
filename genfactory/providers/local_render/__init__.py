"""The local renderer's parts: its vocabularies (`vocab`, from genfactory/data), drawing
helpers (`draw`) and scene painters (`scenes`). `genfactory.providers.local_image` composes them."""
