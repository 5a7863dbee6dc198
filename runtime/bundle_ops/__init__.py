"""``ufd-bundle``: verify a copied bundle, describe it, slim it, keys, device parity here."""
