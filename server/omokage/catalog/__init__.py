"""Face catalogs: the on-disk format, the procedural default catalog and ingest of real images."""

from omokage.catalog.store import (Catalog, CatalogError, CatalogWriter, Item, Texture, encode_texture,
                                   images_to_matrix, matrix_to_images)

__all__ = ["Catalog", "CatalogError", "CatalogWriter", "Item", "Texture", "encode_texture",
           "images_to_matrix", "matrix_to_images"]
