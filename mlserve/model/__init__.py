"""The course model and its data: loading MNIST, the CNN, export, input framing."""
