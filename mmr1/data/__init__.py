"""Datasets: loaders, rows, lazy images, problems reported with file and row."""

from mmr1.data.dataset import RowDataset
from mmr1.data.images import ImageLoadError, load_image, load_images
from mmr1.data.problems import DataError, DataProblem

__all__ = ["DataError", "DataProblem", "ImageLoadError", "RowDataset", "load_image", "load_images"]
