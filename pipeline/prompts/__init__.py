"""Prompt sources beside the grid and given boxes: a YOLOv8 detector (``yolo``) and the AutoPPN proposal head
(``autoppn``)."""
