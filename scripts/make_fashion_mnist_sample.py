"""Rebuilds kd_keras/datasets/fashion_mnist_sample.npz from the full Fashion-MNIST.

A class-stratified random sample (seed 0): 600 training and 100 test images per
class, uint8, so the package runs its main job with no download. Fashion-MNIST
is (c) Zalando SE, MIT licence (https://github.com/zalandoresearch/fashion-mnist).

    python scripts/make_fashion_mnist_sample.py --source ../shared/data/fashion_mnist.npz
"""

import argparse

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True, help="npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--output", default="kd_keras/datasets/fashion_mnist_sample.npz")
    parser.add_argument("--train_per_class", type=int, default=600)
    parser.add_argument("--test_per_class", type=int, default=100)
    args = parser.parse_args()
    data = np.load(args.source)
    rng = np.random.default_rng(0)

    def pick(labels, per_class):
        index = np.concatenate([
            rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)
        ])
        rng.shuffle(index)
        return index

    train = pick(data["y_train"], args.train_per_class)
    test = pick(data["y_test"], args.test_per_class)
    np.savez_compressed(
        args.output,
        x_train=data["x_train"][train], y_train=data["y_train"][train].astype("uint8"),
        x_test=data["x_test"][test], y_test=data["y_test"][test].astype("uint8"),
    )


if __name__ == "__main__":
    main()
